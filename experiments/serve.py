"""`cogitans serve`: a swarm behind a small HTTP JSON API that keeps evolving from people's votes.

    POST /ask       {"question": "..."}              -> answer, confidence, agents, memory hits, id
    POST /feedback  {"id": "...", "vote": "up"|"down"} -> the vote applied as one step
    GET  /health                                       -> step, population, pending asks
    GET  /docs                                         -> OpenAPI docs (FastAPI)

`SwarmService` owns the live swarm and the run store: `ask` is the in-process query function
(the same as `cogitans ask`), `feedback` applies a vote as one simulation step and writes it to
the run store at once, and a checkpoint is written every `checkpoint_every` votes and at
shutdown. Endpoints are `async` and run on the event loop one at a time, so the swarm and the
SQLite connection are only ever touched from one thread and no lock is needed.

Requests larger than `MAX_BODY` bytes get 413, malformed JSON 400, wrong fields or types 422,
unknown ask ids 404 and a second vote on one answer 409, each with {"error": "<one line>"}.
"""

from __future__ import annotations

import secrets
import sys
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from experiments.ask import (
    MAX_QUESTION,
    Asked,
    answer,
    apply_vote,
    check_question,
    load_swarm,
    record_vote,
)
from experiments.runner import save_checkpoint
from experiments.store import RunStore
from genome.errors import BadInput

MAX_BODY = 16 * 1024  # bytes
MAX_PENDING = 10_000  # asks kept for a vote; the oldest are forgotten first


class SwarmService:
    """A run's swarm, answering questions and learning from votes. Not thread-safe by design."""

    def __init__(self, run_dir: Path, checkpoint_every: int = 100):
        if checkpoint_every < 1:
            raise BadInput(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.run_dir = Path(run_dir)
        self.model, self.spec = load_swarm(self.run_dir)
        self.checkpoint_every = checkpoint_every
        self.pending: OrderedDict[str, tuple[Asked, str]] = OrderedDict()  # id -> (asked, answer text)
        self.voted: OrderedDict[str, str] = OrderedDict()  # id -> vote, to refuse a second vote
        self.store: RunStore | None = None
        self.votes_since_checkpoint = 0
        self.asked = 0
        self.votes = 0

    def open(self) -> None:
        """Open the run store (from the thread that will use it) and log the start."""
        self.store = RunStore(self.run_dir / "run.sqlite")
        self.store.event(self.model.steps, "serve_started", {"checkpoint_step": self.model.steps})

    def close(self) -> None:
        """Checkpoint, log the stop and close the run store."""
        if self.store is None:
            return
        save_checkpoint(self.run_dir, self.model)
        self.store.event(self.model.steps, "serve_stopped", {"asked": self.asked, "votes": self.votes})
        self.store.set_status("finished", steps_total=self.model.steps)
        self.store.close()
        self.store = None

    def ask(self, question: str) -> dict[str, Any]:
        """Answer one question; the result carries the `id` to vote on."""
        question = check_question(question)
        results, asked = answer(self.model, [question])
        ask_id = secrets.token_hex(8)
        self.pending[ask_id] = (asked[0], results[0]["answer"])
        while len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)
        self.asked += 1
        return {"id": ask_id, **results[0]}

    def feedback(self, ask_id: str, vote: str) -> dict[str, Any]:
        """Apply a vote on an earlier answer as one step, store it, checkpoint now and then."""
        if ask_id in self.voted:
            raise Conflict(f"ask {ask_id} already has a vote ({self.voted[ask_id]})")
        if ask_id not in self.pending:
            raise NotFound(f"unknown ask id {ask_id!r} (never asked, or older than the last {MAX_PENDING} asks)")
        asked, answer_text = self.pending.pop(ask_id)
        applied = apply_vote(self.model, asked, vote)
        if self.store is not None:
            record_vote(self.store, asked, vote, applied, ask_id, answer_text)
        self.voted[ask_id] = vote
        while len(self.voted) > MAX_PENDING:
            self.voted.popitem(last=False)
        self.votes += 1
        self.votes_since_checkpoint += 1
        if self.votes_since_checkpoint >= self.checkpoint_every:
            save_checkpoint(self.run_dir, self.model)
            self.votes_since_checkpoint = 0
        return {"id": ask_id, "vote": vote, "step": applied["step"], "answer": answer_text,
                "rewards": applied["rewards"], "memory_demoted": applied["memory_demoted"],
                "births": len(applied["births"].agent_id),
                "deaths": len(applied["deaths"]), "population": int(applied["metrics"]["population"])}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "step": int(self.model.steps), "population": int(self.model._global("alive").sum()),
                "pending": len(self.pending), "asked": self.asked, "votes": self.votes}


class NotFound(BadInput):
    """An ask id the service does not know."""


class Conflict(BadInput):
    """A second vote on the same answer."""


# ---- HTTP ------------------------------------------------------------------------------------
class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., min_length=1, max_length=MAX_QUESTION, description="the question, in text",
                          examples=["What is the capital of France?"])

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the question is empty")
        return v


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=64, pattern=r"^[0-9a-f]+$", description="the id /ask returned")
    vote: Literal["up", "down"] = Field(..., description="thumbs up (right) or down (wrong)")


def create_app(service: SwarmService):
    """The FastAPI application around a `SwarmService` (opened and closed by the app's lifespan)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @asynccontextmanager
    async def lifespan(app):
        service.open()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="Cogitans swarm", lifespan=lifespan,
                  description="Ask an evolved swarm of tiny neural agents; your votes become their fitness.")
    app.add_middleware(LimitBody, limit=MAX_BODY)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error(400, "malformed JSON body")
        parts = []
        for e in errors[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {str(e.get('msg', 'invalid')).removeprefix('Value error, ')}")
        return error(422, "; ".join(parts))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(BadInput)
    async def _bad(request: Request, exc: BadInput):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
        return error(status, str(exc))

    @app.post("/ask", summary="Ask the swarm a question")
    async def ask(body: AskRequest) -> dict[str, Any]:
        return service.ask(body.question)

    @app.post("/feedback", summary="Vote on an answer: up or down")
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        return service.feedback(body.id, body.vote)

    @app.get("/health", summary="Step, population and pending asks")
    async def health() -> dict[str, Any]:
        return service.health()

    return app


class _TooLarge(HTTPException):
    """Raised while the body streams in; FastAPI passes an HTTPException through to the handlers."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes")


class LimitBody:
    """ASGI middleware: 413 for a body over `limit` bytes (declared or streamed), before any parsing."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _send_error(send, 413, f"request body over {self.limit} bytes")
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as err:  # read outside a route (no handler caught it)
            await _send_error(send, 413, err.detail)


async def _send_error(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def run_server(run_dir: Path, host: str = "127.0.0.1", port: int = 8000, checkpoint_every: int = 100) -> None:
    """Load the run, then serve until interrupted (Ctrl-C checkpoints and closes the run store)."""
    import torch
    import uvicorn

    if not 0 < port < 65536:
        raise BadInput(f"--port must be between 1 and 65535, got {port}")
    torch.set_num_threads(1)  # one query at a time: extra threads only contend
    service = SwarmService(run_dir, checkpoint_every=checkpoint_every)
    print(f"serving {run_dir} on http://{host}:{port} (docs at /docs); Ctrl-C to stop", file=sys.stderr)
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", access_log=False)
