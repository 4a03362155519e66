"""The code of a registered trial's model, as MLflow's models-from-code loads it: MLflow copies this file into the
model and runs it at load time, so the registry holds no pickled object (loading one runs arbitrary code)."""

from mlflow.models import set_model

from sweeper.trained.register import TrialModel

set_model(TrialModel())
