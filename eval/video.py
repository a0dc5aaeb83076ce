"""mp4 videos of evaluation episodes (opencv), written frame by frame with the running return overlaid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SCALE = 4  # 84x84 Atari frames -> 336x336
BANNER = 24  # pixels of black caption bar above the frame


def frame_from_obs(obs: np.ndarray, rgb: bool) -> np.ndarray:
    """Newest frame of one env's observation ``[C, H, W]`` uint8 -> ``[H, W, 3]`` BGR.

    ``rgb``: the last three channels are an RGB frame (DMLab); otherwise the last channel is a grey frame of
    a frame stack (Atari).
    """
    if obs.ndim != 3:
        raise ValueError(f"videos need image observations [C, H, W]; got shape {tuple(obs.shape)}")
    if rgb:
        return cv2.cvtColor(np.ascontiguousarray(np.moveaxis(obs[-3:], 0, -1)), cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(np.ascontiguousarray(obs[-1]), cv2.COLOR_GRAY2BGR)


class EpisodeVideo:
    """Writes frames to ``path`` as mp4 (``mp4v``), upscaled, under a caption with the return so far."""

    def __init__(self, path: str | Path, title: str, fps: float, rgb: bool) -> None:
        self.path = Path(path)
        self.title = title
        self.fps = fps
        self.rgb = rgb
        self.num_frames = 0
        self._writer: cv2.VideoWriter | None = None

    def add(self, obs: np.ndarray, episode_return: float) -> None:
        """Append the frame of ``obs`` (one env, ``[C, H, W]``) captioned with ``episode_return``."""
        frame = frame_from_obs(obs, self.rgb)
        frame = cv2.resize(frame, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
        frame = cv2.copyMakeBorder(frame, BANNER, 0, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self._writer.isOpened():
                raise RuntimeError(f"opencv cannot write mp4 video '{self.path}' (no mp4v encoder?)")
        caption = f"{self.title}  return {episode_return:g}"
        cv2.putText(frame, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        self._writer.write(frame)
        self.num_frames += 1

    def close(self) -> None:
        """Finish the file (no file is written if no frame was added)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def count_frames(path: str | Path) -> int:
    """Number of frames opencv decodes from the video at ``path`` (0 if it cannot be opened)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.isOpened():
            ok, _ = capture.read()
            if not ok:
                break
            count += 1
    finally:
        capture.release()
    return count
