"""Inference commands on a user's own inputs (an image, a video, a tracks file): forecast, pose, lift."""
