"""LeNet-5 in its common modern form (ReLU, max-pooling)."""

from zoo._registry import register_model
from zoo._spec import LayerTableBuilder, ModelSpec

LENET = register_model(
    ModelSpec(
        name="lenet",
        title="LeNet-5 (modern form: ReLU, max-pooling)",
        reference="LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. "
        "Proc. IEEE 86(11), 1998",
        input_shape=(1, 32, 32),
        num_classes=10,
        expected_params=61_706,
        expected_macs=416_520,
        layers=(
            LayerTableBuilder((1, 32, 32))
            .conv("conv1", 6, 5).relu("relu1").maxpool("pool1", 2, 2)
            .conv("conv2", 16, 5).relu("relu2").maxpool("pool2", 2, 2)
            .flatten("flatten")
            .dense("fc1", 120).relu("relu3")
            .dense("fc2", 84).relu("relu4")
            .dense("fc3", 10)
            .build()
        ),
    ),
    family=__name__,
)
