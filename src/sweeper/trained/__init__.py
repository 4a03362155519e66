"""Using a trained trial from MLflow: reproduce it, predict with it, export it."""
