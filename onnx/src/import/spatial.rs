//! Nodes that resample or normalize over space and channels: Resize (and opset 7–9's
//! Upsample), ConvTranspose (a learned upsampling), LRN.

use hwnas_core::op::{ConvTranspose, Lrn, Op, Resize, ResizeMode, Tensor};

use super::mapper::{At, Mapper, Problem, Val, unmapped};

impl<'g> Mapper<'g> {
    pub(super) fn lrn(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let (value, shape) = self.act_in(at.node, 0)?;
        let size = at.node.attr("size").map_or(0, |a| a.i);
        let size = u32::try_from(size)
            .map_err(|_| Problem::Invalid(format!("`{}`: LRN size {size}", at.name)))?;
        let v = self.push(
            Op::Lrn(Lrn { input: shape, size }),
            &[value],
            vec![at.name.clone()],
        )?;
        self.act_val(at.out, v, shape);
        Ok(1)
    }

    /// Resize (X, roi, scales, sizes; opset 10: X, scales) and Upsample (X, scales; opset 7–8:
    /// a `scales` attribute), on H and W.
    pub(super) fn resize(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let node = at.node;
        let (value, shape) = self.act_in(node, 0)?;
        let mode = node
            .attr("mode")
            .map_or(&b"nearest"[..], |a| a.s.as_slice());
        let mode = match mode {
            b"nearest" => ResizeMode::Nearest,
            b"linear" | b"bilinear" => ResizeMode::Linear,
            other => {
                return unmapped(format!("{} mode", String::from_utf8_lossy(other)));
            }
        };
        let constant = |k: usize| match node.input.get(k).and_then(|n| self.vals.get(n.as_str())) {
            Some(Val::Const(c)) if !c.dims.contains(&0) => c.float_values(),
            _ => None,
        };
        let scales_input = if node.op_type == "Upsample" || node.input.len() == 2 {
            1
        } else {
            2
        };
        let (h, w) = if let Some(sizes) = constant(3) {
            match sizes[..] {
                [n, c, h, w] if (n, c) == (shape.n as f64, shape.c as f64) => (h, w),
                _ => return unmapped(format!("sizes {sizes:?} that change N or C")),
            }
        } else {
            let scales = constant(scales_input).or_else(|| {
                node.attr("scales")
                    .map(|a| a.floats.iter().map(|&f| f64::from(f)).collect())
            });
            match scales.as_deref() {
                Some(&[1.0, 1.0, sh, sw]) => {
                    ((shape.h as f64 * sh).floor(), (shape.w as f64 * sw).floor())
                }
                Some(other) => return unmapped(format!("scales {other:?} that change N or C")),
                None => return unmapped("scales or sizes that are not constants"),
            }
        };
        let dim = |v: f64| u32::try_from(v as i64).ok().filter(|&d| d > 0);
        let (Some(h), Some(w)) = (dim(h), dim(w)) else {
            return Err(Problem::Invalid(format!(
                "`{}`: resize to {h}x{w}",
                at.name
            )));
        };
        let op = Op::Resize(Resize {
            input: shape,
            h,
            w,
            mode,
        });
        let v = self.push(op, &[value], vec![at.name.clone()])?;
        self.act_val(at.out, v, Tensor::new(shape.n, shape.c, h, w));
        Ok(1)
    }
}

impl<'g> Mapper<'g> {
    /// ConvTranspose: square kernels, equal strides, the same padding on every side, no
    /// dilation or output padding.
    pub(super) fn conv_transpose(&mut self, at: &At<'_, 'g>) -> Result<usize, Problem> {
        let node = at.node;
        let (value, shape) = self.act_in(node, 0)?;
        let wdims = self.weight_dims(node)?;
        let [cin, cout_g, kh, kw] = wdims[..] else {
            return unmapped(format!("a {}-D weight (2-D only)", wdims.len()));
        };
        let ints = |k: &str| node.attr(k).map(|a| a.ints.clone());
        let all_equal = |v: &[i64]| v.iter().all(|&x| x == v[0]);
        let stride = ints("strides").unwrap_or_else(|| vec![1, 1]);
        let pads = ints("pads").unwrap_or_else(|| vec![0; 4]);
        let plain = |k: &str, one: i64| ints(k).is_none_or(|v| v.iter().all(|&x| x == one));
        let auto = node
            .attr("auto_pad")
            .is_none_or(|a| a.s.is_empty() || a.s == b"NOTSET");
        if kh != kw || !all_equal(&stride) || pads.len() != 4 || !all_equal(&pads) {
            return unmapped(format!(
                "a {kh}x{kw} kernel, strides {stride:?}, pads {pads:?} (square, uniform only)"
            ));
        }
        if !plain("dilations", 1)
            || !plain("output_padding", 0)
            || !auto
            || ints("output_shape").is_some()
        {
            return unmapped("dilations, output padding or an output shape");
        }
        let groups = node.attr("group").map_or(1, |a| a.i);
        let num = |v: i64, what: &str| {
            u32::try_from(v).map_err(|_| Problem::Invalid(format!("`{}`: {what} {v}", at.name)))
        };
        if cin != i64::from(shape.c) {
            return Err(Problem::Invalid(format!(
                "`{}`: weight {wdims:?} for {} input channels",
                at.name, shape.c
            )));
        }
        let op = Op::ConvTranspose(ConvTranspose {
            input: shape,
            cout: num(cout_g * groups, "outputs")?,
            k: num(kh, "kernel")?,
            stride: num(stride[0], "stride")?,
            pad: num(pads[0], "padding")?,
            groups: num(groups, "groups")?,
        });
        let output = op.output();
        let v = self.push(op, &[value], vec![at.name.clone()])?;
        self.act_val(at.out, v, output);
        Ok(1)
    }
}
