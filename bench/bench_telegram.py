"""Benchmark a Telegram broadcast through the sender against the fake Bot API.

    python bench/bench_telegram.py                          # (a) 3,000 at 30/s, (b) 100,000 at 1,000/s
    python bench/bench_telegram.py --only a --recipients-a 100000    # the issue's full 55-minute run
    python bench/bench_telegram.py --only b --recipients-b 20000 --check   # exit 1 on a missed target

Targets (issue 5): a broadcast to 100,000 Telegram recipients against the fake server with a
30 msg/s limit sustains at least 95% of the limit with no duplicates and no 429 storms; with
the limit raised to 1,000 msg/s (paid broadcasts), at least 500 msg/s on this machine.

Each scenario starts the fake Bot API in its own process (``python -m rfmflow.fake_telegram``,
so the sender under test keeps a core to itself), then sends one message to each of N
distinct private chats through :class:`rfmflow.channels.telegram_sender.TelegramSender`
(python-telegram-bot over HTTP on loopback):

(a) the fake enforces 30 msg/s overall (a bucket of one second's worth), the sender is set to
    Telegram's default limits; (b) the fake enforces 1,000 msg/s for paid broadcasts and the
    sender sends with ``allow_paid_broadcast`` at 1,000 msg/s.

Reported: wall time from the first request to the last outcome, the achieved rate and its
ratio to the limit, the largest number of messages the fake accepted in any one second, 429s
answered (a "storm" would be many), duplicates (a chat that got more than one message, and
message ids with more than one outcome), outcomes by status, and the CPU each process spent
per message. The load average is printed: the machine has 2 cores, and a load above ~2
means something else competed for them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rfmflow.channels.outbound import OutboundMessage
from rfmflow.channels.telegram_limits import TelegramLimits
from rfmflow.channels.telegram_sender import TelegramSender
from rfmflow.fake_telegram import FakeTelegramProcess

TARGET_RATIO_A = 0.95
TARGET_RATE_B = 500.0
FIRST_CHAT = 10_000_000


@dataclass
class Figures:
    name: str
    recipients: int
    limit: float
    seconds: float
    outcomes: Counter[str]
    outcome_duplicates: int
    fake: dict[str, Any]
    chat_duplicates: int
    busiest_second: int
    client_cpu_ms: float
    server_cpu_ms: float
    load: float

    @property
    def rate(self) -> float:
        return self.outcomes.get("delivered", 0) / self.seconds

    def print(self) -> None:
        print(f"\n({self.name}) {self.recipients:,} recipients, limit {self.limit:,.0f} msg/s")
        print(f"  wall time               {self.seconds:10.1f} s")
        print(
            f"  achieved                {self.rate:10.1f} msg/s  ({self.rate / self.limit:.3f} of the limit)"
        )
        print(f"  busiest second (fake)   {self.busiest_second:10d} accepted")
        print(f"  outcomes                {dict(self.outcomes)}")
        print(f"  429s answered           {self.fake['too_many_requests']:10d}")
        dups = f"{self.outcome_duplicates} ids with >1 outcome, {self.fake['duplicates']} repeated texts"
        print(f"  duplicates              {self.chat_duplicates:10d} chats with >1 message, {dups}")
        cpu = f"{self.client_cpu_ms:10.3f} ms sender, {self.server_cpu_ms:.3f} ms fake"
        print(f"  CPU per message         {cpu}")
        print(f"  load average            {self.load:10.1f}")


def _process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _recipients(count: int) -> Iterator[OutboundMessage]:
    for n in range(count):
        chat = FIRST_CHAT + n
        yield OutboundMessage(f"bc-{n}", chat, f"Hello {chat}: 10% off this week")


def _busiest_second(times: list[float]) -> int:
    times.sort()
    best, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def run_scenario(
    name: str, recipients: int, limit: float, fake_args: list[str], limits: TelegramLimits
) -> Figures:
    with FakeTelegramProcess(*fake_args) as fake:
        pid = fake.pid

        async def broadcast() -> tuple[Counter[str], int, float, float, float]:
            async with TelegramSender.for_token(fake.token, limits, base_url=fake.base_url) as sender:
                seen: Counter[str] = Counter()
                started, cpu0, server0 = time.monotonic(), time.process_time(), _process_cpu(pid)
                statuses: Counter[str] = Counter()
                async for outcome in sender.send_many(_recipients(recipients)):
                    statuses[outcome.status] += 1
                    seen[outcome.message_id] += 1
                took = time.monotonic() - started
                client = time.process_time() - cpu0
                server = _process_cpu(pid) - server0
                return statuses, sum(1 for n in seen.values() if n > 1), took, client, server

        statuses, outcome_dups, took, client, server = asyncio.run(broadcast())
        stats = fake.stats()
        sent = fake.messages()
    per_chat = Counter(m["chat_id"] for m in sent)
    return Figures(
        name=name,
        recipients=recipients,
        limit=limit,
        seconds=took,
        outcomes=statuses,
        outcome_duplicates=outcome_dups,
        fake=stats,
        chat_duplicates=sum(1 for n in per_chat.values() if n > 1),
        busiest_second=_busiest_second([m["at"] for m in sent]),
        client_cpu_ms=client / max(1, recipients) * 1000,
        server_cpu_ms=server / max(1, recipients) * 1000,
        load=os.getloadavg()[0],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--recipients-a", type=int, default=3_000, help="scenario (a), 30 msg/s (default 3,000)"
    )
    parser.add_argument("--recipients-b", type=int, default=100_000, help="scenario (b), 1,000 msg/s")
    parser.add_argument("--only", choices=["a", "b"], help="run one scenario")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    print(f"load average before: {os.getloadavg()[0]:.1f}")
    missed: list[str] = []
    if args.only in (None, "a"):
        a = run_scenario("a", args.recipients_a, 30.0, ["--global-per-second", "30"], TelegramLimits())
        a.print()
        ok = a.rate / a.limit >= TARGET_RATIO_A and a.chat_duplicates == 0 and a.outcome_duplicates == 0
        print(f"  target >= {TARGET_RATIO_A:.0%} of the limit, no duplicates: {'met' if ok else 'MISSED'}")
        if not ok:
            missed.append("a")
    if args.only in (None, "b"):
        limits = TelegramLimits(messages_per_second=1000.0, paid_broadcast=True)
        b = run_scenario("b", args.recipients_b, 1000.0, ["--paid-per-second", "1000"], limits)
        b.print()
        ok = b.rate >= TARGET_RATE_B and b.chat_duplicates == 0 and b.outcome_duplicates == 0
        print(f"  target >= {TARGET_RATE_B:.0f} msg/s, no duplicates: {'met' if ok else 'MISSED'}")
        if not ok:
            missed.append("b")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
