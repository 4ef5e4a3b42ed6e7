"""The predictions table: the row the function logs, and the migrations that make a database ready for it.

Migrations are applied in order, each once, and recorded in `schema_migrations`. They run in one transaction
under a transaction-level advisory lock, so instances that start together take turns: the first applies what is
missing, the others find it recorded. A new migration is one more string appended to `MIGRATIONS`; it must not
need to run outside a transaction (no `CREATE INDEX CONCURRENTLY`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime


@dataclass(frozen=True)
class Issued:
    """A prediction the service made, and for whom: the X-Client-Id it came with (None: made without one)."""

    client_id: str | None

    def may_take_feedback_from(self, client_id: str | None) -> bool:
        """A browser's prediction takes feedback from that browser alone; one made without a client id (curl)
        from whoever holds its id."""
        return self.client_id is None or self.client_id == client_id


@dataclass(frozen=True)
class Feedback:
    """What someone said of a prediction: right, or wrong and which class it is (None: the predicted one)."""

    prediction_id: uuid.UUID
    correct: bool
    true_class: str | None
    client_id: str | None
    at: datetime


@dataclass(frozen=True)
class Row:
    """One prediction, as logged."""

    id: uuid.UUID
    created_at: datetime
    image_sha256: str
    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    model_name: str
    model_version: str
    revision: str | None
    latency_ms: float
    source: str  # http, event, oip, batch
    request_id: str | None
    event_source: str | None = None  # a CloudEvent's source and id: unique together (EVENT_KEY)
    event_id: str | None = None
    client_id: str | None = None  # the browser that asked (X-Client-Id): its history is its own

    def values(self) -> tuple:
        """The column values in `COLUMNS` order, probabilities as JSON text."""
        return (self.id, self.created_at, self.image_sha256, self.predicted_class, self.confidence,
                json.dumps(self.probabilities), self.model_name, self.model_version, self.revision,
                self.latency_ms, self.source, self.request_id, self.event_source,
                self.event_id, self.client_id)  # fmt: skip


@dataclass(frozen=True)
class ShadowRow:
    """The shadow model's answer to a served prediction's image, keyed by the served prediction's id: feedback on
    the served answer (its true class) labels this one too."""

    prediction_id: uuid.UUID  # the served prediction's
    created_at: datetime
    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    model_name: str
    model_version: str
    revision: str | None
    latency_ms: float  # the shadow's own inference time, off the answer path

    def values(self) -> tuple:
        return (self.prediction_id, self.created_at, self.predicted_class, self.confidence,
                json.dumps(self.probabilities), self.model_name, self.model_version, self.revision,
                self.latency_ms)  # fmt: skip


@dataclass(frozen=True)
class Table:
    """Where a kind of row goes, for the writer: its table, columns and the unique keys a retry may meet."""

    name: str
    columns: tuple[str, ...]
    primary_key: str
    event_key: str | None = None

    @property
    def copy_sql(self) -> str:
        return f"COPY {self.name} ({', '.join(self.columns)}) FROM STDIN"

    @property
    def insert_sql(self) -> str:
        return f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES ({', '.join(['%s'] * len(self.columns))})"


COLUMNS = tuple(field.name for field in fields(Row))
PRIMARY_KEY = "predictions_pkey"
EVENT_KEY = "predictions_event_key"  # one row per CloudEvent (source, id), whichever instance classified it
PREDICTIONS = Table("predictions", COLUMNS, PRIMARY_KEY, EVENT_KEY)
SHADOW_PREDICTIONS = Table(
    "shadow_predictions", tuple(field.name for field in fields(ShadowRow)), "shadow_predictions_pkey"
)

MIGRATIONS = [
    # 1: the table as the first version created it, word for word, so a database it made is already there.
    """
    CREATE TABLE IF NOT EXISTS predictions (
        id uuid PRIMARY KEY,
        created_at timestamptz NOT NULL,
        image_sha256 text NOT NULL,
        predicted_class text NOT NULL,
        confidence real NOT NULL,
        probabilities jsonb NOT NULL,
        model_name text NOT NULL,
        model_version text NOT NULL,
        revision text,
        latency_ms real NOT NULL,
        source text NOT NULL,
        request_id text
    );
    CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
    """,
    # 2: CloudEvents are logged once: a redelivery (Knative retries on 5xx and timeouts) adds no row. Rows that
    # are not events have NULLs here, which a unique index never compares equal.
    f"""
    ALTER TABLE predictions ADD COLUMN IF NOT EXISTS event_source text, ADD COLUMN IF NOT EXISTS event_id text;
    CREATE UNIQUE INDEX IF NOT EXISTS {EVENT_KEY} ON predictions (event_source, event_id);
    """,
    # 3: the web UI: each browser's own history, and what people say of a prediction. No foreign key from
    # feedback to predictions: feedback may arrive while its prediction's row is still in the writer's queue.
    """
    ALTER TABLE predictions ADD COLUMN IF NOT EXISTS client_id text;
    CREATE INDEX IF NOT EXISTS predictions_client ON predictions (client_id, created_at)
        WHERE client_id IS NOT NULL;
    CREATE TABLE IF NOT EXISTS feedback (
        prediction_id uuid PRIMARY KEY,
        client_id text,
        correct boolean NOT NULL,
        true_class text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    );
    """,
    # 4: a shadow model's answers (SHADOW_MODEL_URI), one per served prediction it saw, under the served
    # prediction's id. No foreign key, as for feedback: the served row may still be queued.
    """
    CREATE TABLE IF NOT EXISTS shadow_predictions (
        prediction_id uuid PRIMARY KEY,
        created_at timestamptz NOT NULL,
        predicted_class text NOT NULL,
        confidence real NOT NULL,
        probabilities jsonb NOT NULL,
        model_name text NOT NULL,
        model_version text NOT NULL,
        revision text,
        latency_ms real NOT NULL
    );
    CREATE INDEX IF NOT EXISTS shadow_predictions_created_at ON shadow_predictions (created_at);
    """,
]

MIGRATION_LOCK = 0x66697368_6C6F6721  # "fish_log!": the pg_advisory_xact_lock key every instance takes

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn) -> list[int]:
    """Apply the migrations `conn`'s database has not recorded yet; returns the versions applied now."""
    async with conn.transaction():
        # The lock comes first: even `CREATE TABLE IF NOT EXISTS` fails when two sessions run it at once.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(_LEDGER)
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        recorded = {version for (version,) in await cursor.fetchall()}
        applied = []
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version not in recorded:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
        return applied
