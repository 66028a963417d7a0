"""Audio stage (issue 4): decode once, silero VAD, diarization, whisperx ASR.

Pure functions live in ``decode``, ``vad``, ``diarization`` and ``asr``; the single entry
point for one video is :func:`assets.audio.pipeline.analyze_audio`.
"""
