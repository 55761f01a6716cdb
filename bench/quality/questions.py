"""The evaluation questions: loading, checking against the corpus, and the split.

``questions.jsonl`` holds one question a line::

    {"id": "q001", "kind": "paraphrase", "split": "dev", "question": "...",
     "gold": ["faq.txt", "usage/builders/index.txt"], "evidence": ["rinoh"]}

``gold`` are corpus paths that answer the question (any one of them counts as a
hit); ``evidence`` are words from the answering passage, and every gold file must
contain at least one of them, so a gold path that stops matching its question
(a new corpus version, a typo) is caught by ``--check``. Unanswerable questions
have no gold and instead ``absent``: words an answer would have to contain, which
``--check`` confirms no corpus file does.

    .venv/bin/python bench/quality/questions.py --check
    .venv/bin/python bench/quality/questions.py --assign-splits   # new questions only

The split was drawn once, before any tuning, and is kept in the file: assigning
only touches questions without one, so adding questions never moves old ones.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "questions.jsonl"
KINDS = ("paraphrase", "exact", "unanswerable")
SPLITS = ("dev", "test")
SPLIT_SEED = 20240612


@dataclass
class Question:
    id: str
    kind: str
    question: str
    gold: list[str] = field(default_factory=list)
    split: str | None = None
    evidence: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"


def load(path: Path = QUESTIONS) -> list[Question]:
    with path.open(encoding="utf-8") as fh:
        return [Question(**json.loads(line)) for line in fh if line.strip()]


def save(questions: list[Question], path: Path = QUESTIONS) -> None:
    """One JSON object a line, keys in a fixed order, empty lists left out."""
    order = ("id", "kind", "split", "question", "gold", "evidence", "absent")
    with path.open("w", encoding="utf-8") as fh:
        for q in questions:
            row = asdict(q)
            row = {k: row[k] for k in order if row[k] not in (None, [])}
            if not q.answerable:
                row["gold"] = []
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def assign_splits(questions: list[Question], seed: int = SPLIT_SEED) -> int:
    """Give each question without a split one, stratified by kind; return how many.

    Within a kind the unassigned questions are shuffled with a fixed seed and
    dealt alternately, starting with the split that kind has fewer of, so each
    kind ends up about half dev and half test.
    """
    rng = random.Random(seed)
    assigned = 0
    for kind in KINDS:
        of_kind = [q for q in questions if q.kind == kind]
        todo = [q for q in of_kind if q.split is None]
        rng.shuffle(todo)
        counts = Counter(q.split for q in of_kind if q.split)
        for q in todo:
            q.split = min(SPLITS, key=lambda s: (counts[s], SPLITS.index(s)))
            counts[q.split] += 1
            assigned += 1
    return assigned


def problems(questions: list[Question], corpus_root: Path) -> list[str]:
    """Everything wrong with the questions against the corpus, as messages."""
    texts = {
        p.relative_to(corpus_root).as_posix(): p.read_text(encoding="utf-8").lower()
        for p in corpus_root.rglob("*.txt")
    }
    found: list[str] = []
    seen: set[str] = set()
    for q in questions:
        where = f"{q.id} ({q.question[:40]!r})"
        if q.id in seen:
            found.append(f"{where}: duplicate id")
        seen.add(q.id)
        if q.kind not in KINDS:
            found.append(f"{where}: unknown kind {q.kind!r}")
        if q.split not in SPLITS:
            found.append(f"{where}: split {q.split!r}")
        if q.answerable:
            found += _gold_problems(q, texts, where)
        else:
            found += _absent_problems(q, texts, where)
    return found


def _gold_problems(q: Question, texts: dict[str, str], where: str) -> list[str]:
    if not q.gold or not q.evidence:
        return [f"{where}: an answerable question needs gold and evidence"]
    found = []
    for path in q.gold:
        text = texts.get(path)
        if text is None:
            found.append(f"{where}: gold {path} is not in the corpus")
        elif not any(word.lower() in text for word in q.evidence):
            found.append(f"{where}: gold {path} has none of {q.evidence}")
    return found


def _absent_problems(q: Question, texts: dict[str, str], where: str) -> list[str]:
    if q.gold or not q.absent:
        return [f"{where}: an unanswerable question has no gold and some absent"]
    return [
        f"{where}: {word!r} occurs in {path}"
        for word in q.absent
        for path, text in texts.items()
        if word.lower() in text
    ]


def summary(questions: list[Question]) -> str:
    counts = Counter((q.split, q.kind) for q in questions)
    return ", ".join(
        f"{split}: " + " ".join(f"{kind} {counts[split, kind]}" for kind in KINDS)
        for split in SPLITS
    )


def main() -> None:
    from corpus import ensure_corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="check against corpus")
    parser.add_argument("--assign-splits", action="store_true")
    args = parser.parse_args()
    questions = load()
    if args.assign_splits:
        print(f"assigned a split to {assign_splits(questions)} questions")
        save(questions)
    print(f"{len(questions)} questions; {summary(questions)}")
    if args.check:
        found = problems(questions, ensure_corpus())
        for message in found:
            print(message)
        print(f"{len(found)} problems")
        sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
