"""LiteLLM routing by the registry: a custom routing strategy for `litellm.Router`.

    config = httpx.get(f"{url}/v1/export/litellm", headers=auth).json()   # or `locus-registry export litellm`
    router = litellm.Router(**config)
    LocusRouting(LocusClient(url, api_key=KEY), config["model_list"]).install(router)
    router.completion(model="locus-auto", messages=[...])   # the registry picks the deployment

For the auto group (`locus-auto`), the strategy asks `POST /v1/route` which registered model should
answer the last user message. When that deployment fails, LiteLLM falls back to the groups
`locus-auto:1..k` that the exported config lists; for those the strategy answers with the registry's
nearest *capable* neighbours of the failed model (`GET /v1/models/{id}/fallbacks`: active, a context
window at least the failed model's and the prompt's), skipping deployments already tried for this
request. Any other group is served by its own deployments (round robin), and the exported `fallbacks`
of that group already are the registry's capable neighbours.

If the registry cannot be reached, the auto group degrades to the deployments in config order rather
than failing the gateway's request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litellm.types.router import CustomRoutingStrategyBase

from locus_registry_client.client import LocusClient
from locus_registry_client.errors import LocusError

log = logging.getLogger("locus_registry_client.litellm")

AUTO_MODEL = "locus-auto"
_REMEMBERED = 10_000  # requests whose attempts are remembered (oldest forgotten first)


@dataclass
class _Attempts:
    """The deployments one request has been sent to, in order (all but the last have failed)."""

    tried: list[str] = field(default_factory=list)  # registry ids
    prompt_tokens: int = 0


class LocusRouting(CustomRoutingStrategyBase):
    """Pick deployments with the registry: `POST /v1/route` first, then the failed model's capable
    neighbours. `model_list` is the config's; deployments are matched to registered models by
    `model_info.registry_id` (the export sets it)."""

    def __init__(
        self,
        client: LocusClient,
        model_list: Sequence[Mapping[str, Any]],
        *,
        auto_model: str = AUTO_MODEL,
        cost_weight: float = 0.0,
        max_neighbours: int = 10,
    ) -> None:
        self.client = client
        self.auto_model = auto_model
        self.cost_weight = cost_weight
        self.max_neighbours = max_neighbours
        self.deployments = [dict(d) for d in model_list]
        self.by_registry_id: dict[str, dict[str, Any]] = {}
        for d in self.deployments:
            rid = (d.get("model_info") or {}).get("registry_id")
            if isinstance(rid, str):
                self.by_registry_id.setdefault(rid, d)
        self._groups: dict[str, itertools.cycle[dict[str, Any]]] = {}
        self._attempts: OrderedDict[str, _Attempts] = OrderedDict()
        self._lock = threading.Lock()

    def install(self, router: Any) -> None:
        """Make this strategy pick every deployment of `router`."""
        register = getattr(router, "register_plugin", None)
        if register is not None:
            register(self)
        else:  # LiteLLM releases before `register_plugin`
            router.set_custom_routing_strategy(self)

    # ------------------------------------------------------------ LiteLLM's interface

    async def async_get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> Any:
        # The client is synchronous: ask the registry from a worker thread, not on the event loop.
        return await asyncio.to_thread(
            self.get_available_deployment, model, messages, input, specific_deployment, request_kwargs
        )

    def get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> Any:
        group, _, _ = model.partition(":")
        if group != self.auto_model:
            return self._own_group(model)
        trace = str((request_kwargs or {}).get("litellm_trace_id") or uuid.uuid4())
        with self._lock:
            attempts = self._attempts.pop(trace, None) or _Attempts()
            self._attempts[trace] = attempts
            while len(self._attempts) > _REMEMBERED:
                self._attempts.popitem(last=False)
        if not attempts.tried:
            attempts.prompt_tokens = _prompt_tokens(messages)
            chosen = self._route(_last_user_text(messages, input))
        else:
            chosen = self._neighbour(attempts)
        attempts.tried.append(chosen)
        deployment = self.by_registry_id[chosen]
        log.info("routed %s attempt %d to %s", model, len(attempts.tried), deployment["model_name"])
        return deployment

    # ------------------------------------------------------------ decisions

    def _own_group(self, model: str) -> dict[str, Any]:
        with self._lock:
            cycle = self._groups.get(model)
            if cycle is None:
                members = [d for d in self.deployments if d.get("model_name") == model]
                if not members:
                    raise ValueError(f"no deployment named {model!r} in the model list")
                cycle = self._groups[model] = itertools.cycle(members)
            return next(cycle)

    def _route(self, text: str) -> str:
        if not self.by_registry_id:
            raise ValueError(
                "no deployment carries model_info.registry_id: export the config from the registry"
            )
        try:
            routed = self.client.route(
                [text or " "],
                candidates=list(self.by_registry_id),
                cost_weight=self.cost_weight,
                top_k=1,
                fallbacks=0,
            )
            return str(routed.routes[0].chosen.id)
        except LocusError as exc:
            log.warning("registry routing failed (%s): using the first deployment", exc)
            return next(iter(self.by_registry_id))

    def _neighbour(self, attempts: _Attempts) -> str:
        failed = attempts.tried[-1]
        window = (self.by_registry_id[failed].get("model_info") or {}).get("max_input_tokens")
        need = max(int(window or 0), attempts.prompt_tokens) or None
        try:
            fb = self.client.fallbacks(
                failed,
                k=self.max_neighbours,
                filters={"min_context_window": need} if need else None,
            )
            order = [str(f.model.id) for f in fb.items]
        except LocusError as exc:
            log.warning("registry fallbacks failed (%s): trying deployments in config order", exc)
            order = list(self.by_registry_id)
        for rid in order:
            if rid in self.by_registry_id and rid not in attempts.tried:
                return rid
        raise ValueError(
            f"no capable fallback left for {self.by_registry_id[failed]['model_name']!r} "
            f"(tried {len(attempts.tried)}; context window >= {need})"
        )


def _last_user_text(messages: Sequence[Mapping[str, Any]] | None, input: object) -> str:
    for m in reversed(messages or ()):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # OpenAI content parts
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return input if isinstance(input, str) else ""


def _prompt_tokens(messages: Sequence[Mapping[str, Any]] | None) -> int:
    if not messages:
        return 0
    try:
        from litellm import token_counter

        return int(token_counter(messages=list(messages)))
    except Exception:  # an unknown tokenizer must not fail the request: a rough count instead
        return sum(len(str(m.get("content", ""))) for m in messages) // 4
