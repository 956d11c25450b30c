"""Chess puzzles (Burns et al.) from the Lichess puzzle database, as a binary task.

A Lichess record's FEN is the position *before* the opponent's move; `Moves` (UCI, space separated)
starts with that move, and the puzzle's solution starts with the second. The example shows the position
after the opponent's move and a candidate move: the solution's first move (label 1) or, half of the time,
another legal move of the same position (label 0).
"""

from __future__ import annotations

import random

from .chess_rules import Position
from .registry import TaskDataError


def format_chess_puzzle(record: dict, rng: random.Random) -> dict:
    moves = record["Moves"].split()
    if len(moves) < 2:
        raise TaskDataError(f"puzzle {record['PuzzleId']}: Moves {record['Moves']!r} has no solution move")
    position = Position.from_fen(record["FEN"])
    legal = position.legal_moves()
    if moves[0] not in legal:
        raise TaskDataError(f"puzzle {record['PuzzleId']}: {moves[0]} is not legal in {record['FEN']}")
    puzzle = position.play(moves[0])
    legal = puzzle.legal_moves()
    solution = moves[1]
    if solution not in legal:
        raise TaskDataError(f"puzzle {record['PuzzleId']}: {solution} is not legal in {puzzle.fen()}")
    others = [m for m in legal if m != solution]
    label = int(not others or rng.random() < 0.5)
    candidate = solution if label else rng.choice(others)
    side = "White" if puzzle.white_to_move else "Black"
    text = f"Chess position (FEN): {puzzle.fen()}\n{side} to move. Candidate move (UCI): {candidate}"
    return {"text": text, "label": label}
