"""Chess puzzles: the move generator against known move counts, and the puzzle formatter on real Lichess
puzzles (tests/fixtures/hub/chess_puzzles.jsonl, rows of the Lichess puzzle database)."""

import json
import random
from pathlib import Path

import pytest

from w2s.data.tasks import TaskDataError
from w2s.data.tasks.chess_puzzles import format_chess_puzzle
from w2s.data.tasks.chess_rules import Position

PUZZLES = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "hub" / "chess_puzzles.jsonl").open()]
RNGS = [random.Random(seed) for seed in range(40)]


def perft(position, depth):
    """The number of move sequences of `depth` plies: counts every legal move, castling, promotion and
    en passant, and every position `play` leads to."""
    if depth == 0:
        return 1
    return sum(perft(position.play(move), depth - 1) for move in position.legal_moves())


# Standard perft positions and their published counts (chessprogramming.org, "Perft Results").
@pytest.mark.parametrize(
    "fen, counts",
    [
        ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1", [20, 400, 8902]),
        ("r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1", [48, 2039]),
        ("8/2p5/3p4/KP5r/1R3p1k/8/4P1P1/8 w - - 0 1", [14, 191, 2812]),
        ("r3k2r/Pppp1ppp/1b3nbN/nP6/BBP1P3/q4N2/Pp1P2PP/R2Q1RK1 w kq - 0 1", [6, 264, 9467]),
        ("rnbq1k1r/pp1Pbppp/2p5/8/2B5/8/PPP1NnPP/RNBQK2R w KQ - 1 8", [44, 1486]),
        ("r4rk1/1pp1qppp/p1np1n2/2b1p1B1/2B1P1b1/P1NP1N2/1PP1QPPP/R4RK1 w - - 0 10", [46, 2079]),
    ],
)
def test_move_generator_matches_published_perft_counts(fen, counts):
    position = Position.from_fen(fen)
    assert position.fen() == fen
    assert [perft(position, depth) for depth in range(1, len(counts) + 1)] == counts


def test_play_handles_castling_en_passant_and_promotion():
    castled = Position.from_fen("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1").play("e1g1")
    assert castled.fen() == "r3k2r/8/8/8/8/8/8/R4RK1 b kq - 1 1"
    pushed = Position.from_fen("4k3/8/8/3p4/8/8/4P3/4K3 w - - 0 1").play("e2e4")
    assert pushed.fen() == "4k3/8/8/3p4/4P3/8/8/4K3 b - e3 0 1"
    assert "d5e4" in pushed.legal_moves()
    taken = Position.from_fen("4k3/8/8/8/3pP3/8/8/4K3 b - e3 0 1").play("d4e3")
    assert taken.fen() == "4k3/8/8/8/8/4p3/8/4K3 w - - 0 2"
    promoted = Position.from_fen("4k3/1P6/8/8/8/8/8/4K3 w - - 0 1")
    assert {"b7b8q", "b7b8r", "b7b8b", "b7b8n"} <= set(promoted.legal_moves())
    assert promoted.play("b7b8n").fen() == "1N2k3/8/8/8/8/8/8/4K3 b - - 0 1"


def test_a_pinned_piece_and_a_king_in_check_have_only_legal_moves():
    # The e-file rook pins the knight to its king; the knight may not move at all.
    pinned = Position.from_fen("4r1k1/8/8/8/8/8/4N3/4K3 w - - 0 1")
    assert not any(move.startswith("e2") for move in pinned.legal_moves())
    # In check from the rook on e8, the king must step off the e-file (or block with the knight).
    check = Position.from_fen("4r1k1/8/8/8/8/8/3N4/4K3 w - - 0 1")
    assert check.in_check()
    assert set(check.legal_moves()) == {"e1d1", "e1f1", "e1f2", "d2e4"}


def test_every_real_puzzle_is_a_sequence_of_legal_moves():
    for puzzle in PUZZLES:
        position = Position.from_fen(puzzle["FEN"])
        for move in puzzle["Moves"].split():
            assert move in position.legal_moves(), (puzzle["PuzzleId"], move)
            position = position.play(move)


def test_puzzle_shows_the_position_after_the_opponents_move_and_a_legal_candidate():
    seen = set()
    for puzzle in PUZZLES:
        moves = puzzle["Moves"].split()
        after = Position.from_fen(puzzle["FEN"]).play(moves[0])
        for rng in RNGS:
            out = format_chess_puzzle(puzzle, rng)
            side = "White" if after.white_to_move else "Black"
            prefix = f"Chess position (FEN): {after.fen()}\n{side} to move. Candidate move (UCI): "
            assert out["text"].startswith(prefix)
            candidate = out["text"][len(prefix) :]
            assert candidate in after.legal_moves()
            assert out["label"] == int(candidate == moves[1])
            seen.add(out["label"])
    assert seen == {0, 1}


def test_first_real_puzzle_text():
    # 00sHx: Black's king steps to d7 (moves[0], losing castling rights) and White's solution starts
    # with Be6+ (a2e6).
    texts = {format_chess_puzzle(PUZZLES[0], rng)["text"] for rng in RNGS}
    position = "Chess position (FEN): q5nr/1ppknQpp/3p4/1P2p3/4P3/B1PP1b2/B5PP/5K2 w - - 1 18\nWhite to move."
    assert f"{position} Candidate move (UCI): a2e6" in texts
    assert all(text.startswith(position) for text in texts)


def test_puzzle_whose_moves_are_not_legal_is_an_error():
    with pytest.raises(TaskDataError, match="not legal"):
        format_chess_puzzle(PUZZLES[0] | {"Moves": "e8e7 a2e6"}, random.Random(0))
    with pytest.raises(TaskDataError, match="no solution move"):
        format_chess_puzzle(PUZZLES[0] | {"Moves": "e8d7"}, random.Random(0))
