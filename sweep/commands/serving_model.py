"""The model definition MLflow logs as code (models from code: no pickled Python objects)."""

import mlflow

from sweep.commands.serving import FERPyfunc

mlflow.models.set_model(FERPyfunc())
