"""Task: sample continuations from a base model or saved sampler weights."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_tinker.blocks import TinkerCredentials
from prefect_tinker.errors import ConfigurationError
from prefect_tinker.paths import TinkerPath
from prefect_tinker.retries import RETRY_OPTIONS, typed_sdk_errors
from prefect_tinker.tasks.results import Sample


@task(name="Sample from Tinker", cache_policy=NO_CACHE, **RETRY_OPTIONS)
@typed_sdk_errors("the sampler of", "model_path")
def sample(
    credentials: TinkerCredentials,
    prompt: str | list[int],
    model_path: str | None = None,
    base_model: str | None = None,
    num_samples: int = 1,
    max_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = -1,
    stop: list[str] | list[int] | None = None,
    seed: int | None = None,
) -> list[Sample]:
    """Sample `num_samples` continuations of `prompt` (text, or token ids).

    Give `model_path` (`tinker://<run>/sampler_weights/<name>`) to sample a trained adapter, or
    `base_model` for the base model. Text prompts are tokenized with the model's tokenizer
    and samples come back with their text.

    Example:
        ```python
        samples = sample(creds, "The capital of France is", model_path=result.sampler_path)
        print(samples[0].text)
        ```
    """
    import tinker

    if model_path is None and not base_model:
        raise ConfigurationError(
            "sample needs model_path ('tinker://<run_id>/sampler_weights/<name>') or base_model."
        )
    if model_path is not None:
        model_path = str(TinkerPath.parse(model_path))
    client = (
        credentials.get_service_client()
        .create_sampling_client(
            model_path=model_path, base_model=None if model_path else base_model
        )
        .result()
    )
    tokenizer = None
    if isinstance(prompt, str):
        from prefect_tinker.models import get_tokenizer

        tokenizer = get_tokenizer(base_model or client.get_base_model())
        tokens = tokenizer.encode(prompt, add_special_tokens=False)
    else:
        tokens = list(prompt)
    response = client.sample(
        prompt=tinker.ModelInput.from_ints(tokens),
        num_samples=num_samples,
        sampling_params=tinker.SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop=stop,
            seed=seed,
        ),
    ).result()
    return [
        Sample(
            tokens=list(seq.tokens),
            logprobs=list(seq.logprobs) if seq.logprobs is not None else None,
            stop_reason=str(seq.stop_reason),
            text=tokenizer.decode(list(seq.tokens)) if tokenizer is not None else None,
        )
        for seq in response.sequences
    ]
