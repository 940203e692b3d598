"""The speech synthesizers built from real recordings that the mixed synthetic corpus speaks with: flite, festival.

espeak-ng (formant synthesis, `synth_corpus.speak`) makes every voice from rules; these two engines make
speech from recordings of real people, so their spectra are much closer to natural speech:

    flite     kal16 (a diphone voice), awb, rms, slt (statistical voices trained on CMU ARCTIC speakers)
    festival  kal, ked (diphone voices, festvox-kallpc16k, festvox-kdlpc16k),
              slt-hts (the HTS voice festvox-us-slt-hts, the same speaker as flite's slt)

Prosody is varied with the engines' own controls (measured on flite 2.2 and festival 2.5 here):

    stretch   duration factor (1.2 = 20 % slower): flite `--setf duration_stretch=`, festival
              `Duration_Stretch` (a factor on the voice's own), the HTS voice's speed option `-r` (= 1/stretch)
    pitch     factor on the voice's mean F0: flite `--setf f0_shift=` and festival's `int_lr_params` target
              mean and deviation. flite's rms and festival's slt-hts ignore every pitch setting (the output is
              byte-identical), so those two voices vary in rate only (PITCHLESS).

Both engines are deterministic: the same text and settings give byte-identical audio. `speak` returns float32
audio at 16 kHz (festival's HTS voice speaks at 32 kHz and is resampled), shape (samples,), untrimmed.
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, resample
from asr.errors import ASRError

FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = {  # our name -> the Scheme function that selects the voice
    "kal": "voice_kal_diphone",
    "ked": "voice_ked_diphone",
    "slt-hts": "voice_cmu_us_slt_arctic_hts",
}
PITCHLESS = frozenset({("flite", "rms"), ("festival", "slt-hts")})  # (engine, voice) with no pitch control
# int_lr_params of the diphone voices (their .scm files): the F0 mean and deviation in Hz that `pitch` scales.
_FESTIVAL_F0 = {"kal": (105.0, 14.0), "ked": (105.0, 15.0)}
INSTALL = {
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
}


def installed(engine: str) -> bool:
    """Whether the engine's program is on PATH."""
    return shutil.which(engine) is not None


def version(engine: str) -> str:
    """The installed engine's version ("2.2", "2.5.0"); raises with install advice when it is missing."""
    if not installed(engine):
        raise ASRError(f"{engine}: not on PATH — install it ({INSTALL[engine]})")
    flag = "--version"
    out = subprocess.run([engine, flag], capture_output=True, text=True).stdout
    match = re.search(r"(?:flite-|System: )(\d[\w.]*)", out)
    return match.group(1) if match else out.strip()


def missing_voices(engine: str) -> list[str]:
    """The engine's voices (of FLITE_VOICES / FESTIVAL_VOICES) this machine cannot speak with."""
    if not installed(engine):
        return list(FLITE_VOICES if engine == "flite" else FESTIVAL_VOICES)
    if engine == "flite":
        listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
        return [v for v in FLITE_VOICES if v not in listing]
    script = "".join(f'(if (not (boundp \'{f})) (format t "missing {v}\\n"))' for v, f in FESTIVAL_VOICES.items())
    out = subprocess.run(["festival", "--pipe"], input=script, capture_output=True, text=True).stdout
    return re.findall(r"missing (\S+)", out)


def speak(engine: str, text: str, voice: str, stretch: float, pitch: float) -> np.ndarray:
    """`text` spoken by `voice` of `engine` ("flite" or "festival"), as float32 at 16 kHz, shape (samples,)."""
    if (engine, voice) in PITCHLESS and pitch != 1.0:
        raise ValueError(f"{engine} {voice}: this voice has no pitch control — use pitch 1.0")
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        wav = Path(tmp) / "out.wav"
        if engine == "flite":
            cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}"]
            if pitch != 1.0:
                cmd += ["--setf", f"f0_shift={pitch}"]
            result = subprocess.run([*cmd, "-t", text, "-o", str(wav)], capture_output=True, text=True)
        elif engine == "festival":
            script = Path(tmp) / "say.scm"
            script.write_text(festival_script(text, voice, stretch, pitch, wav), encoding="utf-8")
            result = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True)
        else:
            raise ValueError(f"{engine}: unknown engine — use flite or festival")
        if not wav.is_file() or wav.stat().st_size <= 44:  # festival reports Scheme errors with exit status 0
            error = (result.stderr + result.stdout).strip().splitlines()
            raise RuntimeError(f"{engine} {voice} failed on {text!r}: {error[-1] if error else 'no audio'}")
        audio, rate = sf.read(str(wav), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return audio if rate == SAMPLE_RATE else resample(audio, rate)


def festival_script(text: str, voice: str, stretch: float, pitch: float, wav: Path) -> str:
    """The Scheme program `festival -b` runs to say `text` into `wav` (a RIFF wav at the voice's own rate)."""
    if voice not in FESTIVAL_VOICES:
        raise ValueError(f"{voice}: not a festival voice of this corpus — use one of {sorted(FESTIVAL_VOICES)}")
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    lines = [f"({FESTIVAL_VOICES[voice]})"]
    if voice == "slt-hts":  # HTS computes its own durations: its speed option is the only rate control
        lines.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / stretch:.6f}))))')
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch (* {stretch} (Parameter.get 'Duration_Stretch)))")
        mean, std = _FESTIVAL_F0[voice]
        lines.append(
            f"(set! int_lr_params '((target_f0_mean {mean * pitch:.3f}) (target_f0_std {std * pitch:.3f}) "
            "(model_f0_mean 170) (model_f0_std 34)))"
        )
    lines.append(f'(utt.save.wave (SynthText "{quoted}") "{wav}" \'riff)')
    return "\n".join(lines) + "\n"
