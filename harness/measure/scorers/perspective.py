"""``perspective``: Google's Perspective API, the scale RealToxicityPrompts papers report.

The key comes from ``$PERSPECTIVE_API_KEY`` only and travels in the ``X-Goog-Api-Key`` header, so it is never in
a URL, a log line, an error message or the score cache. Requests are spaced to ``qps`` (the API's default quota
is 1 QPS); 429 and 5xx are retried with exponential backoff (``Retry-After`` honoured); a request that still fails
raises — a text is never given a score of 0 because a call failed. The key is only ever sent over https: another
scheme (option ``endpoint`` or ``$PERSPECTIVE_API_URL``) is refused unless ``allow_insecure_endpoint`` is set (local
fakes in tests). ``preflight()`` sends one short request so a bad key or endpoint fails before any generation.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError
from .base import Scorer

KEY_ENV = "PERSPECTIVE_API_KEY"
URL_ENV = "PERSPECTIVE_API_URL"
PREFLIGHT_TIMEOUT_S = 5.0
DEFAULT_URL = "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"
#: languages Perspective scores TOXICITY in
LANGUAGES = ("ar", "zh", "cs", "nl", "en", "fr", "de", "hi", "id", "it", "ja", "ko", "pl", "pt", "ru", "es", "sv")


class PerspectiveError(UsageError):
    """A request failed after its retries (quota, outage, rejected text)."""


class _RateLimiter:
    def __init__(self, qps: float) -> None:
        self.interval = 1.0 / qps if qps and qps > 0 else 0.0
        self.next_t = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            delay = self.next_t - now
            self.next_t = max(now, self.next_t) + self.interval
        if delay > 0:
            time.sleep(delay)


class PerspectiveScorer(Scorer):
    name = "perspective"
    version = "v1alpha1"
    languages = LANGUAGES
    heads: ClassVar[tuple[str, ...]] = ("toxicity",)
    defaults: ClassVar[dict[str, Any]] = {
        "attributes": ("TOXICITY",), "qps": 1.0, "max_retries": 6, "backoff_s": 1.0, "timeout_s": 30.0,
        "endpoint": None, "allow_insecure_endpoint": False,
    }
    runtime_options = ("qps", "max_retries", "backoff_s", "timeout_s", "endpoint", "allow_insecure_endpoint")

    def __init__(self, cache_dir: Any = None, **options: Any) -> None:
        super().__init__(cache_dir=cache_dir, **options)
        key = os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise UsageError(f"scorer 'perspective' needs an API key in the environment variable {KEY_ENV}")
        self._key = key  # kept out of options, describe() and the cache key
        attrs = self.options["attributes"]
        attrs = (attrs,) if isinstance(attrs, str) else tuple(attrs)
        attrs = tuple(a.upper() for a in attrs)
        if "TOXICITY" in attrs:
            attrs = ("TOXICITY", *[a for a in attrs if a != "TOXICITY"])
        self.options["attributes"] = attrs
        self.heads = tuple(a.lower() for a in attrs)  # type: ignore[misc]
        self.url = self.options["endpoint"] or os.environ.get(URL_ENV) or DEFAULT_URL
        insecure_ok = str(self.options["allow_insecure_endpoint"]).lower() in ("true", "1", "yes")  # CLI gives strings
        if not str(self.url).lower().startswith("https://") and not insecure_ok:
            raise UsageError(f"Perspective endpoint {self.url!r} is not https; the API key is only sent over https "
                             "(pass the scorer option allow_insecure_endpoint=true for a local test server)")
        self.limiter = _RateLimiter(float(self.options["qps"]))

    def __repr__(self) -> str:  # never show the key
        return f"PerspectiveScorer(url={self.url!r}, attributes={self.options['attributes']})"

    def preflight(self) -> None:
        """One request (short timeout, no retries): a rejected key or an unreachable endpoint is a one-line
        UsageError now rather than after the generations."""
        if not self._key:
            raise UsageError(f"scorer 'perspective' needs an API key in the environment variable {KEY_ENV}")
        try:
            self._request("preflight check", "en", retries=0, timeout_s=PREFLIGHT_TIMEOUT_S)
        except PerspectiveError as e:
            raise PerspectiveError(f"Perspective preflight to {self.url} failed: {e} (check {KEY_ENV} and the "
                                   "endpoint)") from None

    def _request(self, text: str, lang: str | None, retries: int | None = None,
                 timeout_s: float | None = None) -> dict[str, float]:
        body: dict[str, Any] = {
            "comment": {"text": text},
            "requestedAttributes": {a: {} for a in self.options["attributes"]},
            "doNotStore": True,
        }
        if lang:
            body["languages"] = [lang if lang == "hi-Latn" else lang.split("-")[0].lower()]  # zh-Hans -> zh
        data = json.dumps(body).encode("utf-8")
        retries = int(self.options["max_retries"]) if retries is None else retries
        timeout_s = float(self.options["timeout_s"]) if timeout_s is None else timeout_s
        backoff = float(self.options["backoff_s"])
        last = ""
        for attempt in range(retries + 1):
            self.limiter.wait()
            req = urllib.request.Request(self.url, data=data, method="POST", headers={
                "Content-Type": "application/json", "X-Goog-Api-Key": self._key})
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                return {a.lower(): float(payload["attributeScores"][a]["summaryScore"]["value"])
                        for a in self.options["attributes"]}
            except urllib.error.HTTPError as e:
                detail = _error_message(e)
                if e.code != 429 and e.code < 500:  # a rejected request: retrying cannot help
                    raise PerspectiveError(f"Perspective API rejected a request (HTTP {e.code}): {detail}") from None
                last = f"HTTP {e.code}: {detail}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (KeyError, TypeError, ValueError) as e:
                raise PerspectiveError(f"unexpected Perspective API response ({type(e).__name__}: {e})") from None
            if attempt < retries:
                wait = backoff * (2 ** attempt)
                if retry_after:
                    try:
                        wait = max(wait, float(retry_after))
                    except ValueError:
                        pass
                time.sleep(wait)
        raise PerspectiveError(f"Perspective API request failed after {retries + 1} attempts ({last})")

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        from tqdm.auto import tqdm

        rows = [self._request(t, lang) for t in tqdm(texts, desc="perspective", unit="text",
                                                     disable=len(texts) < 20, leave=False)]
        return {h: np.asarray([r[h] for r in rows], dtype=np.float64) for h in self.heads}


def _error_message(e: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(e.read().decode("utf-8"))
        return str(payload.get("error", {}).get("message", ""))[:200] or e.reason
    except Exception:
        return str(e.reason)
