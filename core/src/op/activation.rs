//! Element-wise activations: names, parsing and reference semantics.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::OpError;

/// An element-wise activation (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    Relu,
    Relu6,
    /// Hard swish, `x * relu6(x + 3) / 6` (MobileNetV3).
    HSwish,
    /// Swish / SiLU, `x * sigmoid(x)`.
    Swish,
    /// Hard sigmoid, `relu6(x + 3) / 6`.
    HSigmoid,
    Sigmoid,
    Tanh,
    /// `max(x, 0.01 x)`, PyTorch's default slope (the slope does not change the time).
    LeakyRelu,
}

/// The slope [`Activation::LeakyRelu`] is built and evaluated with.
pub const LEAKY_RELU_ALPHA: f32 = 0.01;

impl Activation {
    pub const ALL: [Activation; 9] = [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::HSwish,
        Activation::Swish,
        Activation::HSigmoid,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::LeakyRelu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::HSwish => "hswish",
            Activation::Swish => "swish",
            Activation::HSigmoid => "hsigmoid",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::LeakyRelu => "leakyrelu",
        }
    }

    /// Scalar reference semantics, shared by the plain-Rust reference and the tests.
    pub fn apply(self, x: f32) -> f32 {
        let relu6 = |v: f32| v.clamp(0.0, 6.0);
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => relu6(x),
            Activation::HSwish => x * relu6(x + 3.0) / 6.0,
            Activation::Swish => x / (1.0 + (-x).exp()),
            Activation::HSigmoid => relu6(x + 3.0) / 6.0,
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::LeakyRelu => x.max(LEAKY_RELU_ALPHA * x),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = OpError;
    fn from_str(s: &str) -> Result<Self, OpError> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| OpError::Field {
                field: "act".into(),
                value: s.into(),
                expected:
                    "one of none, relu, relu6, hswish, swish, hsigmoid, sigmoid, tanh, leakyrelu"
                        .into(),
            })
    }
}
