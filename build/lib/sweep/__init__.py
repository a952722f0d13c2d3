"""sweep: orchestration of nrfer trials with Ray Tune + Optuna + MLflow. Imports nrfer, never the reverse."""
