"""A third-party operator, written only against rare's public API."""

from rare import Operator, hookimpl


class WordCount(Operator):
    """Adds the number of words of ``input_key`` as ``output_key``."""

    def run(self, storage, input_key="text", output_key="word_count"):
        df = storage.read("dataframe")
        self.require_columns(df, [input_key], storage.read_path)
        df[output_key] = [len(str(t).split()) for t in df[input_key]]
        storage.write(df)
        self.stats = {"rows_in": len(df), "rows_out": len(df), "failed": 0}
        return [output_key]


@hookimpl
def register_operators(register):
    register(WordCount)
