"""The rules of chess that the puzzle task needs: read a FEN, list the legal moves (UCI), play a move.

Written here rather than taken from python-chess, which is GPL-3.0 and so cannot be a dependency of this
Apache-2.0 project without relicensing what ships with it. Squares are (file, rank), both 0..7.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .registry import TaskDataError

Square = tuple[int, int]

_KNIGHT = [(1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2)]
_KING = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
_ROOK_RAYS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
_BISHOP_RAYS = [(1, 1), (1, -1), (-1, 1), (-1, -1)]
_RAYS = {"r": _ROOK_RAYS, "b": _BISHOP_RAYS, "q": _ROOK_RAYS + _BISHOP_RAYS}
# Castling right -> (king from, king to, rook from, rook to, squares that must be empty).
_CASTLING = {
    "K": ((4, 0), (6, 0), (7, 0), (5, 0), [(5, 0), (6, 0)]),
    "Q": ((4, 0), (2, 0), (0, 0), (3, 0), [(1, 0), (2, 0), (3, 0)]),
    "k": ((4, 7), (6, 7), (7, 7), (5, 7), [(5, 7), (6, 7)]),
    "q": ((4, 7), (2, 7), (0, 7), (3, 7), [(1, 7), (2, 7), (3, 7)]),
}


def square_name(square: Square) -> str:
    return "abcdefgh"[square[0]] + str(square[1] + 1)


def parse_square(name: str) -> Square:
    if len(name) != 2 or name[0] not in "abcdefgh" or name[1] not in "12345678":
        raise TaskDataError(f"not a square: {name!r}")
    return "abcdefgh".index(name[0]), int(name[1]) - 1


@dataclass(frozen=True)
class Position:
    # Square -> piece letter, upper case for White (FEN's letters).
    board: dict[Square, str]
    white_to_move: bool
    castling: str
    en_passant: Square | None
    halfmove: int
    fullmove: int

    @classmethod
    def from_fen(cls, fen: str) -> Position:
        fields = fen.split()
        if len(fields) != 6:
            raise TaskDataError(f"a FEN has 6 fields: {fen!r}")
        placement, side, castling, en_passant, halfmove, fullmove = fields
        ranks = placement.split("/")
        if len(ranks) != 8:
            raise TaskDataError(f"a FEN board has 8 ranks: {fen!r}")
        board = {}
        for row, rank_text in enumerate(ranks):
            file = 0
            for char in rank_text:
                if char.isdigit():
                    file += int(char)
                elif char.lower() in "pnbrqk":
                    board[(file, 7 - row)] = char
                    file += 1
                else:
                    raise TaskDataError(f"unknown piece {char!r} in FEN {fen!r}")
            if file != 8:
                raise TaskDataError(f"rank {8 - row} of FEN {fen!r} does not have 8 squares")
        ep = None if en_passant == "-" else parse_square(en_passant)
        return cls(board, side == "w", "" if castling == "-" else castling, ep, int(halfmove), int(fullmove))

    def fen(self) -> str:
        rows = []
        for rank in range(7, -1, -1):
            row, empty = "", 0
            for file in range(8):
                piece = self.board.get((file, rank))
                if piece is None:
                    empty += 1
                    continue
                row += (str(empty) if empty else "") + piece
                empty = 0
            rows.append(row + (str(empty) if empty else ""))
        ep = square_name(self.en_passant) if self.en_passant else "-"
        side = "w" if self.white_to_move else "b"
        return f"{'/'.join(rows)} {side} {self.castling or '-'} {ep} {self.halfmove} {self.fullmove}"

    def _own(self, piece: str | None) -> bool:
        return piece is not None and piece.isupper() == self.white_to_move

    def attacked(self, square: Square, by_white: bool) -> bool:
        """Whether a piece of the given colour attacks `square`."""

        def is_piece(sq: Square, kinds: str) -> bool:
            piece = self.board.get(sq)
            return piece is not None and piece.isupper() == by_white and piece.lower() in kinds

        file, rank = square
        behind = -1 if by_white else 1
        if any(is_piece((file + df, rank + behind), "p") for df in (-1, 1)):
            return True
        if any(is_piece((file + df, rank + dr), "n") for df, dr in _KNIGHT):
            return True
        if any(is_piece((file + df, rank + dr), "k") for df, dr in _KING):
            return True
        for rays, kinds in ((_ROOK_RAYS, "rq"), (_BISHOP_RAYS, "bq")):
            for df, dr in rays:
                sq = (file + df, rank + dr)
                while 0 <= sq[0] < 8 and 0 <= sq[1] < 8:
                    if sq in self.board:
                        if is_piece(sq, kinds):
                            return True
                        break
                    sq = (sq[0] + df, sq[1] + dr)
        return False

    def _pseudo_legal(self) -> list[str]:
        moves = []
        forward = 1 if self.white_to_move else -1
        start_rank, last_rank = (1, 7) if self.white_to_move else (6, 0)
        for (file, rank), piece in self.board.items():
            if not self._own(piece):
                continue
            origin = square_name((file, rank))
            kind = piece.lower()
            if kind == "p":
                targets = []
                one = (file, rank + forward)
                if one not in self.board:
                    targets.append(one)
                    two = (file, rank + 2 * forward)
                    if rank == start_rank and two not in self.board:
                        targets.append(two)
                for df in (-1, 1):
                    diagonal = (file + df, rank + forward)
                    target = self.board.get(diagonal)
                    if (target is not None and not self._own(target)) or diagonal == self.en_passant:
                        targets.append(diagonal)
                for target in targets:
                    if not (0 <= target[0] < 8):
                        continue
                    name = origin + square_name(target)
                    moves.extend([name + p for p in "qrbn"] if target[1] == last_rank else [name])
            elif kind in "nk":
                for df, dr in _KNIGHT if kind == "n" else _KING:
                    target = (file + df, rank + dr)
                    if 0 <= target[0] < 8 and 0 <= target[1] < 8 and not self._own(self.board.get(target)):
                        moves.append(origin + square_name(target))
            else:
                for df, dr in _RAYS[kind]:
                    target = (file + df, rank + dr)
                    while 0 <= target[0] < 8 and 0 <= target[1] < 8 and not self._own(self.board.get(target)):
                        moves.append(origin + square_name(target))
                        if target in self.board:
                            break
                        target = (target[0] + df, target[1] + dr)
        moves.extend(self._castling_moves())
        return moves

    def _castling_moves(self) -> list[str]:
        moves = []
        for right in self.castling:
            if right.isupper() != self.white_to_move:
                continue
            king_from, king_to, rook_from, _, between = _CASTLING[right]
            king, rook = ("K", "R") if self.white_to_move else ("k", "r")
            if self.board.get(king_from) != king or self.board.get(rook_from) != rook:
                continue
            if any(sq in self.board for sq in between):
                continue
            # The king may not castle out of, through or into check.
            passed = [king_from, ((king_from[0] + king_to[0]) // 2, king_from[1]), king_to]
            if any(self.attacked(sq, not self.white_to_move) for sq in passed):
                continue
            moves.append(square_name(king_from) + square_name(king_to))
        return moves

    def play(self, move: str) -> Position:
        """The position after `move` (UCI), which is assumed pseudo-legal here: see legal_moves."""
        origin, target = parse_square(move[:2]), parse_square(move[2:4])
        board = dict(self.board)
        piece = board.pop(origin, None)
        if piece is None:
            raise TaskDataError(f"move {move}: no piece on {move[:2]} in {self.fen()}")
        capture = target in board
        kind = piece.lower()
        if kind == "p" and target == self.en_passant and not capture:
            del board[(target[0], origin[1])]
            capture = True
        if kind == "k" and abs(target[0] - origin[0]) == 2:
            right = next(r for r, c in _CASTLING.items() if c[0] == origin and c[1] == target)
            _, _, rook_from, rook_to, _ = _CASTLING[right]
            board[rook_to] = board.pop(rook_from)
        promotion = move[4:]
        board[target] = (promotion.upper() if piece.isupper() else promotion) if promotion else piece
        # A right is lost once its king or rook leaves home, or its rook is captured there.
        touched = {origin, target}
        castling = "".join(r for r, c in _CASTLING.items() if r in self.castling and not touched & {c[0], c[2]})
        double_push = kind == "p" and abs(target[1] - origin[1]) == 2
        return replace(
            self,
            board=board,
            white_to_move=not self.white_to_move,
            castling=castling,
            en_passant=(origin[0], (origin[1] + target[1]) // 2) if double_push else None,
            halfmove=0 if kind == "p" or capture else self.halfmove + 1,
            fullmove=self.fullmove + (0 if self.white_to_move else 1),
        )

    def in_check(self) -> bool:
        king = "K" if self.white_to_move else "k"
        square = next((sq for sq, p in self.board.items() if p == king), None)
        return square is not None and self.attacked(square, not self.white_to_move)

    def legal_moves(self) -> list[str]:
        """Every legal move in UCI (e2e4, e7e8q, e1g1 for castling), sorted."""
        legal = []
        for move in self._pseudo_legal():
            after = self.play(move)
            # After the move it is the opponent's turn: the mover's king must not be attacked.
            if not replace(after, white_to_move=self.white_to_move).in_check():
                legal.append(move)
        return sorted(legal)
