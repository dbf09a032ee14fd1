//! Structure-only models: files that keep every initializer's name, type and dims but drop
//! the values of the large float ones (weights), so that real exports can be committed and
//! shared at a few kilobytes (`scripts/export_torchvision.py` writes them). Latency does not
//! depend on the weights' values, so a runtime can time such a model once [`seed_missing`]
//! has filled them in.

use hwnas_core::rng::SplitMix64;

use crate::proto::{ModelProto, TensorProto, data_type};

/// Whether `t` is a float initializer with dims but no values, stored neither inline nor in
/// an external file.
fn is_missing(t: &TensorProto) -> bool {
    let numel: i64 = t.dims.iter().product();
    t.data_type == data_type::FLOAT
        && numel > 0
        && t.raw_data.is_empty()
        && t.float_data.is_empty()
        && t.data_location != 1
}

/// Fill every float initializer that lacks its values with seeded values in `[-0.1, 0.1)`
/// (small enough that no activation overflows or becomes a denormal). Returns how many were
/// filled; 0 means the model was complete and is unchanged.
pub fn seed_missing(model: &mut ModelProto, seed: u64) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let mut filled = 0;
    for t in graph.initializer.iter_mut().filter(|t| is_missing(t)) {
        let mut rng = SplitMix64::from_str_seed(&t.name, seed);
        let numel: i64 = t.dims.iter().product();
        t.raw_data = (0..numel)
            .flat_map(|_| rng.uniform(0.1).to_le_bytes())
            .collect();
        filled += 1;
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::GraphProto;

    #[test]
    fn only_float_weights_without_values_are_filled_and_deterministically() {
        let mut model = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![
                    TensorProto {
                        name: "w".into(),
                        dims: vec![4, 2],
                        data_type: data_type::FLOAT,
                        ..Default::default()
                    },
                    TensorProto::from_f32("b", &[2], &[1.0, 2.0]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut again = model.clone();
        assert_eq!(seed_missing(&mut model, 7), 1);
        assert_eq!(seed_missing(&mut again, 7), 1);
        let g = model.graph.as_ref().unwrap();
        assert_eq!(g.initializer[0].raw_data.len(), 4 * 8);
        assert_eq!(g.initializer[1].f32_values(), Some(vec![1.0, 2.0]));
        assert_eq!(model, again);
        assert_eq!(
            seed_missing(&mut model, 7),
            0,
            "a complete model is left alone"
        );
    }
}
