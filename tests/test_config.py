import dataclasses
import json

import pytest

from asr.config import MODEL_PRESETS, TrainConfig, flag_fields, from_args, parser_for


def test_every_field_is_a_flag_with_its_default_in_help(capsys):
    parser = parser_for(TrainConfig, description="x")
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in flag_fields(TrainConfig):  # init_from_sha256 is recorded, not given
        assert f"--{field.name}" in text
        assert " ".join(field.metadata["help"].split()) in text
    assert "(default: data/example)" in text and "{tiny,small,base,stream}" in text


def test_a_percent_sign_in_a_help_text_prints_as_written(capsys):
    from asr.config import AugmentConfig

    with pytest.raises(SystemExit):
        parser_for(AugmentConfig).parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(frequency ratio in 1 % steps)" in text and "option_strings" not in text


def test_parsing_spellings_and_round_trip():
    parser = parser_for(TrainConfig)
    config = from_args(TrainConfig, parser.parse_args(["--batch-seconds", "12.5", "--no_download", "--no-amp"]))
    assert config.batch_seconds == 12.5 and config.download is False and config.amp is False
    assert config == TrainConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert from_args(TrainConfig, parser.parse_args([])) == TrainConfig()


def test_given_flags_only():
    parser = parser_for(TrainConfig, defaults=False)
    assert vars(parser.parse_args(["--epochs", "3", "--no_tensorboard"])) == {"epochs": 3, "tensorboard": False}


def test_bad_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        parser_for(TrainConfig).parse_args(["--model", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser_for(TrainConfig).parse_args(["--epochs", "many"])
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_presets_are_model_configs():
    assert set(MODEL_PRESETS) == {"tiny", "small", "base", "stream"}
    assert all(c.rnn_type == "gru" for c in MODEL_PRESETS.values())
