use super::*;
use crate::proto::AttributeProto;

fn node(op: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        output: vec!["y".into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn run(op: &str, attrs: Vec<AttributeProto>, inputs: &[Constant]) -> Constant {
    let refs: Vec<Option<&Constant>> = inputs.iter().map(Some).collect();
    fold(&node(op, attrs), &refs)[0].clone().expect("folds")
}

fn v(x: &[i64]) -> Constant {
    Constant::vector(x.to_vec())
}

fn scalar(x: i64) -> Constant {
    Constant::ints(vec![], vec![x])
}

#[test]
fn torch_chunk_bounds_fold_to_plain_integers() {
    // torch's `x.chunk(2, dim=1)` on 1x116x28x28: Shape → Gather(1) → Add(1) → Div(2) → Mul.
    let shape = Constant::new(vec![1, 116, 28, 28], None);
    let dims = run("Shape", vec![], &[shape]);
    assert_eq!(dims.int_values(), Some(&[1, 116, 28, 28][..]));
    let c = run(
        "Gather",
        vec![AttributeProto::int("axis", 0)],
        &[dims, scalar(1)],
    );
    assert_eq!((c.dims.clone(), c.int_values()), (vec![], Some(&[116][..])));
    let half = run(
        "Div",
        vec![],
        &[run("Add", vec![], &[c, scalar(1)]), scalar(2)],
    );
    assert_eq!(
        half.int_values(),
        Some(&[58][..]),
        "integer division truncates"
    );
    let end = run("Mul", vec![], &[half, scalar(2)]);
    let bound = run(
        "Unsqueeze",
        vec![AttributeProto::ints("axes", &[0])],
        &[end],
    );
    assert_eq!(
        (bound.dims.clone(), bound.int_values()),
        (vec![1], Some(&[116][..]))
    );
}

#[test]
fn slices_gathers_and_concats_follow_the_onnx_rules() {
    let x = v(&[1, 2, 3, 4, 5]);
    let s = run("Slice", vec![], &[x.clone(), v(&[-2]), v(&[i64::MAX])]);
    assert_eq!(s.int_values(), Some(&[4, 5][..]));
    let rev = run(
        "Slice",
        vec![],
        &[x.clone(), v(&[-1]), v(&[i64::MIN]), v(&[0]), v(&[-2])],
    );
    assert_eq!(rev.int_values(), Some(&[5, 3, 1][..]));
    let g = run("Gather", vec![], &[x.clone(), v(&[-1, 0])]);
    assert_eq!(g.int_values(), Some(&[5, 1][..]));
    let c = run(
        "Concat",
        vec![AttributeProto::int("axis", 0)],
        &[v(&[1]), v(&[-1, 7])],
    );
    assert_eq!(c.int_values(), Some(&[1, -1, 7][..]));
    let r = run("Range", vec![], &[scalar(0), scalar(7), scalar(3)]);
    assert_eq!(r.int_values(), Some(&[0, 3, 6][..]));
}

#[test]
fn weights_made_by_nodes_keep_their_dims() {
    // The model zoo's light models make every weight with ConstantOfShape.
    let w = run("ConstantOfShape", vec![], &[v(&[64, 3, 7, 7])]);
    assert_eq!(
        (w.dims.clone(), w.values.is_none()),
        (vec![64, 3, 7, 7], true)
    );
    let t = run(
        "Transpose",
        vec![AttributeProto::ints("perm", &[1, 0, 2, 3])],
        &[w],
    );
    assert_eq!(t.dims, vec![3, 64, 7, 7]);
    let scaled = run(
        "Mul",
        vec![],
        &[t, Constant::new(vec![1], Some(Values::Floats(vec![0.5])))],
    );
    assert_eq!(scaled.dims, vec![3, 64, 7, 7]);
}

#[test]
fn reshape_targets_and_broadcasts_resolve() {
    assert_eq!(
        reshape_dims(&[1, 116, 28, 28], &[0, 2, 58, -1, 28], false),
        Some(vec![1, 2, 58, 28, 28])
    );
    assert_eq!(reshape_dims(&[2, 3], &[4, -1], false), None);
    let m = Constant::ints(vec![2, 1], vec![1, 2]);
    let sum = run("Add", vec![], &[m, v(&[10, 20, 30])]);
    assert_eq!(
        (sum.dims.clone(), sum.int_values()),
        (vec![2, 3], Some(&[11, 21, 31, 12, 22, 32][..]))
    );
    let cast = run("Cast", vec![AttributeProto::int("to", 1)], &[v(&[3])]);
    let scaled = run(
        "Mul",
        vec![],
        &[
            cast,
            Constant::new(vec![1], Some(Values::Floats(vec![2.5]))),
        ],
    );
    let floor = run("Floor", vec![], &[scaled]);
    let back = run("Cast", vec![AttributeProto::int("to", 7)], &[floor]);
    assert_eq!(back.int_values(), Some(&[7][..]));
    let w = run("Where", vec![], &[v(&[1, 0]), v(&[5, 6]), v(&[8, 9])]);
    assert_eq!(w.int_values(), Some(&[5, 9][..]));
}

#[test]
fn an_op_the_folder_does_not_know_is_opaque() {
    let refs = [Some(&scalar(1))];
    assert_eq!(fold(&node("NonZero", vec![]), &refs), vec![None]);
}
