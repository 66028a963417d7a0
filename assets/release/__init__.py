"""The release export (issue 18): SpeakerVid-5M's file layout from the kept clips, with clip media on request."""
