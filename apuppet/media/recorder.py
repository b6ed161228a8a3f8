"""A recording's timeline, sans-I/O: the relay's H.264 access units in, samples with a presentation time out.

The relay already turns the device's RTP into whole access units (`relay.StreamRelay.unit_listeners`, fed by its
`H264Assembler`, which drops what follows a loss until the next keyframe and puts SPS/PPS before every IDR).
A recording takes those units as they are, never decoding them; what is left to decide is where it starts and
which time each picture is shown at:

* it starts at a keyframe (with its SPS/PPS: a file that starts elsewhere shows grey until the next one), and
  waits for the next keyframe again when the writer had to drop a picture (`restart`);
* presentation times count 90 kHz ticks from that first keyframe, following the RTP timestamps; where they
  cannot be followed (the agent restarted its sender: a new SSRC or numbering, a timestamp that goes back, or one
  that disagrees with the clock by more than `MAX_CLOCK_DRIFT`) the time that passed on the server's clock
  is used instead, so that a pause of the device stays a pause in the file and times always increase.

`sps_dimensions` reads the picture size from an SPS (ITU-T H.264 §7.3.2.1.1), which an MP4 track header needs
before its first sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from .h264 import NAL_SPS, AccessUnit, H264Assembler, nal_type
from .rtp import VIDEO_CLOCK_RATE, RtpPacket, ts_diff

#: RTP timestamps that run this many seconds ahead of or behind the server's clock are not followed.
MAX_CLOCK_DRIFT = 2.0

#: profile_idc values whose SPS carries chroma format, bit depths and scaling matrices (§7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class _Bits:
    """An RBSP bit reader (emulation prevention bytes removed) with the Exp-Golomb codes of §9.1."""

    def __init__(self, nal: bytes) -> None:
        self.data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("SPS is truncated")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("SPS has an invalid Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) in pixels of an SPS NAL unit (with its header byte), cropping applied; `ValueError` for
    anything that is not a parsable SPS."""
    if not sps or nal_type(sps) != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    r = _Bits(sps[1:])
    profile_idc = r.bits(8)
    r.bits(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = r.bit()
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.bit():
                    last = scale = 8
                    for _ in range(16 if i < 6 else 64):
                        if scale:
                            scale = (last + r.se() + 256) % 256
                        last = scale or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    left = right = top = bottom = 0
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    sub_width, sub_height = {1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma_array_type, (1, 1))
    crop_x = 1 if chroma_array_type == 0 else sub_width
    crop_y = (2 - frame_mbs_only) * (1 if chroma_array_type == 0 else sub_height)
    width = width_mbs * 16 - crop_x * (left + right)
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError("SPS crops the whole picture")
    return width, height


@dataclass(frozen=True, slots=True)
class Sample:
    """One picture for the file: an Annex-B access unit and its presentation time in 90 kHz ticks."""

    data: bytes
    pts: int
    keyframe: bool


@dataclass(slots=True)
class RecorderStats:
    samples: int = 0
    keyframes: int = 0
    #: Pictures not recorded: before the first keyframe, or after a drop until the next one.
    skipped: int = 0
    #: Places where the RTP timeline could not be followed and the server's clock was used.
    discontinuities: int = 0


class Recorder:
    """One recording's timeline over the access units of one stream (see the module docstring)."""

    def __init__(self) -> None:
        self.stats = RecorderStats()
        #: (width, height) of the first keyframe's SPS, once one came.
        self.dimensions: tuple[int, int] | None = None
        self.waiting_for_keyframe = True
        self._last_ts: int | None = None
        self._last_pts = -1
        self._last_at = 0.0

    def push(self, unit: AccessUnit, now: float) -> Sample | None:
        """The next access unit, arrived at `now` (monotonic seconds); a sample to write, or None to skip it."""
        if self.waiting_for_keyframe:
            if not unit.keyframe or not self._format_known(unit):
                self.stats.skipped += 1
                return None
            self.waiting_for_keyframe = False
        pts = self._pts(unit.timestamp, now)
        self._last_ts, self._last_pts, self._last_at = unit.timestamp, pts, now
        self.stats.samples += 1
        if unit.keyframe:
            self.stats.keyframes += 1
        return Sample(unit.data, pts, unit.keyframe)

    @property
    def duration(self) -> float:
        """Seconds from the first sample to the last."""
        return max(0, self._last_pts) / VIDEO_CLOCK_RATE

    def restart(self) -> None:
        """A picture was dropped on the way to the file: what follows cannot be decoded until a keyframe."""
        self.waiting_for_keyframe = True

    def replay(self, packets: list[RtpPacket], now: float) -> list[Sample]:
        """Samples from the relay's kept GOP (its RTP packets since the latest keyframe), so that a recording that
        starts mid-stream starts with the picture the first viewer saw rather than at the next keyframe."""
        assembler = H264Assembler()
        units: list[AccessUnit] = []
        for packet in packets:
            units += assembler.push(packet)
        units += assembler.flush()
        samples = [self.push(unit, now) for unit in units]
        return [s for s in samples if s is not None]

    def _format_known(self, unit: AccessUnit) -> bool:
        if self.dimensions is not None:
            return True
        for nal in unit.nals:
            if nal_type(nal) == NAL_SPS:
                try:
                    self.dimensions = sps_dimensions(nal)
                except ValueError:
                    return False
                return True
        return False

    def _pts(self, timestamp: int, now: float) -> int:
        if self._last_ts is None:
            return 0
        step = ts_diff(timestamp, self._last_ts)
        elapsed = now - self._last_at
        if step <= 0 or abs(step / VIDEO_CLOCK_RATE - elapsed) > MAX_CLOCK_DRIFT:
            self.stats.discontinuities += 1
            step = max(1, round(elapsed * VIDEO_CLOCK_RATE))
        return self._last_pts + step
