"""What users run on trained models: colorize images and video, the demo page, export."""
