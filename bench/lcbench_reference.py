"""Make bench/lcbench_data/reference.json with yahpo-gym 1.0.2 itself (not the project's venv:
it pins numpy<2 and ConfigSpace<=0.6.1). Run once, in a throwaway virtualenv:

    python3 -m venv /tmp/yh && /tmp/yh/bin/pip install yahpo-gym==1.0.2 'numpy<2' \
        'ConfigSpace<=0.6.1' onnxruntime pyyaml pandas
    /tmp/yh/bin/python bench/lcbench_reference.py

For every task: 4 configurations drawn by ConfigSpace (seeded), each at epochs 1, 2, 13, 27
and 52, through `BenchmarkSet("lcbench").objective_function`.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import yahpo_gym
from yahpo_gym import BenchmarkSet, local_config

HERE = Path(__file__).with_name("lcbench_data")
EPOCHS = (1, 2, 13, 27, 52)

with tempfile.TemporaryDirectory() as tmp:
    shutil.copytree(HERE, Path(tmp) / "lcbench")
    local_config.init_config()
    local_config.set_data_path(tmp)
    bench = BenchmarkSet("lcbench")
    rows = []
    for task in sorted(bench.instances, key=int):
        bench.set_instance(task)
        space = bench.get_opt_space(drop_fidelity_params=True, seed=int(task))
        for config in space.sample_configuration(4):
            config = config.get_dictionary()
            config.pop("OpenML_task_id")
            for epoch in EPOCHS:
                y = bench.objective_function({**config, "epoch": epoch, "OpenML_task_id": task})[0]
                rows.append(
                    {
                        "task": int(task),
                        "epoch": epoch,
                        "config": config,
                        "outputs": {k: float(v) for k, v in y.items()},
                    }
                )
    (HERE / "reference.json").write_text(
        json.dumps(
            {
                "made_by": f"yahpo-gym {yahpo_gym.__version__ if hasattr(yahpo_gym, '__version__') else '1.0.2'}"
                f" objective_function, Python {sys.version.split()[0]}",
                "rows": rows,
            },
            indent=0,
        )
    )
    print(f"{len(rows)} rows")
