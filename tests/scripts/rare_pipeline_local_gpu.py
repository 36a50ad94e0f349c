# A user's RARE pipeline written for the reference framework's local-GPU serving, with only
# its imports changed to rare-synth's (tests/test_vllm.py runs it as it is). The model path
# comes from the environment, as the reference's own GPU scripts let it.
import os

from rare.operators import (
    RAREBM25HardNegGenerator,
    RAREDoc2QueryGenerator,
    RAREReasonDistillGenerator,
)
from rare.serving import LocalModelLLMServing_vllm
from rare.storage import FileStorage


class RAREPipeline:
    def __init__(self):

        self.storage = FileStorage(
            first_entry_file_name="./dataflow/example/RAREPipeline/pipeline_small_chunk.json",
            cache_path="./cache_local",
            file_name_prefix="dataflow_cache_step",
            cache_type="json",
        )

        # the teacher runs in this process on the local model
        self.llm_serving = LocalModelLLMServing_vllm(
            hf_model_name_or_path=os.environ.get("RARE_LOCAL_MODEL", "Qwen/Qwen2.5-7B-Instruct"),
            vllm_tensor_parallel_size=1,
            vllm_max_tokens=int(os.environ.get("RARE_LOCAL_MAX_TOKENS", "8192")),
            vllm_max_model_len=int(os.environ.get("RARE_LOCAL_MAX_MODEL_LEN", "24576")),
        )

        self.doc2query_step1 = RAREDoc2QueryGenerator(self.llm_serving)
        self.bm25hardneg_step2 = RAREBM25HardNegGenerator()
        self.reasondistill_step3 = RAREReasonDistillGenerator(self.llm_serving)

    def forward(self):

        self.doc2query_step1.run(
            storage=self.storage.step(),
            input_key="text",
        )

        self.bm25hardneg_step2.run(
            storage=self.storage.step(),
            input_question_key="question",
            input_text_key="text",
            output_negatives_key="hard_negatives",
        )

        self.reasondistill_step3.run(
            storage=self.storage.step(),
            input_text_key="text",
            input_question_key="question",
            input_scenario_key="scenario",
            input_hardneg_key="hard_negatives",
            output_key="reasoning",
        )


if __name__ == "__main__":
    model = RAREPipeline()
    model.forward()
