//! A whole [`Network`] as one ONNX model: the ops' own subgraphs (the same ones
//! [`crate::op_model`] profiles) joined together, so a network measured end to end runs exactly
//! the ops the latency table measured one by one.

use hwnas_core::network::{Network, NetworkError, Value};
use hwnas_core::op::Op;

use crate::build::{GraphBuilder, INPUT_NAMES, output_info};
use crate::proto::{ModelProto, ValueInfoProto};

/// Building a [`Network`] as ONNX (an extension trait: the network itself lives in
/// `hwnas-core`, which knows nothing of ONNX).
pub trait NetworkModel {
    /// The network as one ONNX model (input `x`, output `y`), weights seeded by its name.
    fn to_onnx(&self) -> Result<ModelProto, NetworkError>;
}

impl NetworkModel for Network {
    /// The network as one ONNX model (input `x`, output `y`), weights seeded by its name.
    fn to_onnx(&self) -> Result<ModelProto, NetworkError> {
        self.validate()?;
        let mut g = GraphBuilder::new(&self.name);
        let mut names: Vec<Option<String>> = vec![None; self.nodes.len()];
        let mut used = vec![false; self.nodes.len()];
        for node in &self.nodes {
            for v in &node.inputs {
                if let Value::Node(j) = v {
                    used[*j] = true;
                }
            }
        }
        if let Value::Node(j) = self.output {
            used[j] = true;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            // An unread zero is NAS-Bench-201's `none` edge: nothing runs.
            if matches!(node.op, Op::Zero(_)) && !used[i] {
                continue;
            }
            let inputs: Vec<String> = node
                .inputs
                .iter()
                .map(|v| match v {
                    Value::Input => INPUT_NAMES[0].to_string(),
                    Value::Node(j) => names[*j].clone().expect("validated: inputs come first"),
                })
                .collect();
            names[i] = Some(g.emit(&node.op, &inputs));
        }
        let y = match self.output {
            Value::Input => INPUT_NAMES[0].to_string(),
            Value::Node(j) => names[j].clone().expect("the output node was emitted"),
        };
        g.rename_output(&y);
        let output = match self.output {
            Value::Node(j) => output_info(&self.nodes[j].op),
            Value::Input => ValueInfoProto::f32_tensor("y", &self.input.dims()),
        };
        let input = vec![ValueInfoProto::f32_tensor(
            INPUT_NAMES[0],
            &self.input.dims(),
        )];
        Ok(g.finish(input, output, &self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{Nd, evaluate};
    use crate::{op_inputs, op_model};
    use hwnas_core::op::Tensor;

    #[test]
    fn a_one_op_network_is_the_op_model() {
        let op = Op::from_key("conv-in:1x8x6x6-out:8-k:3-s:1-g:1-pre:none-act:relu").unwrap();
        let mut net = Network::new(op.key(), op.input());
        net.push(op, &[Value::Input]);
        assert_eq!(net.to_onnx().unwrap(), op_model(&op).unwrap());
    }

    #[test]
    fn residual_wiring_computes_the_sum() {
        // y = conv(x) + x, checked against the two pieces evaluated separately.
        let conv = Op::from_key("conv-in:1x4x5x5-out:4-k:3-s:1-g:1-pre:none-act:none").unwrap();
        let t = conv.input();
        let mut net = Network::new("res", t);
        let c = net.push(conv, &[Value::Input]);
        net.push(Op::Add(t), &[c, Value::Input]);
        let model = net.to_onnx().unwrap();
        let x = Nd {
            dims: vec![1, 4, 5, 5],
            data: op_inputs(&conv, 3).remove(0),
        };
        let y = evaluate(&model, &[("x", x.clone())]).unwrap().remove(0);
        let conv_only = {
            let mut n = Network::new("res", t);
            n.push(conv, &[Value::Input]);
            evaluate(&n.to_onnx().unwrap(), &[("x", x.clone())])
                .unwrap()
                .remove(0)
        };
        for i in 0..y.data.len() {
            assert!((y.data[i] - conv_only.data[i] - x.data[i]).abs() < 1e-5);
        }
    }

    #[test]
    fn bad_wiring_is_refused() {
        let conv = Op::from_key("conv-in:1x4x5x5-out:8-k:3-s:1-g:1-pre:none-act:none").unwrap();
        let mut net = Network::new("bad", Tensor::new(1, 4, 5, 5));
        let c = net.push(conv, &[Value::Input]);
        net.push(conv, &[c]);
        let err = net.to_onnx().unwrap_err().to_string();
        assert!(
            err.contains("node 1") && err.contains("expects 1x4x5x5"),
            "{err}"
        );
        let mut net = Network::new("bad", Tensor::new(1, 4, 5, 5));
        net.push(conv, &[Value::Node(0)]);
        assert!(net.validate().is_err());
    }
}
