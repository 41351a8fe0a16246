"""Training: the LightningModule and its losses, building a fit, callbacks, weight average, config checks."""
