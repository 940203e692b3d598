"""DeepSpeech2 CTC speech recognition: features, model, decoding, metrics."""
