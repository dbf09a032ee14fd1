//! ConvTranspose, for the reference evaluator: every input pixel scatters its kernel-weighted
//! value into the output, `stride` apart, less the padding.

use super::{Nd, attr_ints};
use crate::proto::NodeProto;

pub(super) fn conv_transpose(node: &NodeProto, a: &[&Nd]) -> Result<Nd, String> {
    let (x, w) = (a[0], a[1]);
    let [n, cin, h, wd] = x.dims[..] else {
        return Err(format!("ConvTranspose input must be 4-D, got {:?}", x.dims));
    };
    let [wcin, cout_g, kh, kw] = w.dims[..] else {
        return Err(format!(
            "ConvTranspose weight must be 4-D, got {:?}",
            w.dims
        ));
    };
    let groups = node.attr("group").map_or(1, |a| a.i as usize).max(1);
    if wcin != cin || cin % groups != 0 {
        return Err(format!("{cin} input channels vs weight {:?}", w.dims));
    }
    let s = attr_ints(node, "strides", &[1, 1]);
    let p = attr_ints(node, "pads", &[0, 0, 0, 0]);
    let ho = ((h - 1) * s[0] + kh)
        .checked_sub(p[0] + p[2])
        .ok_or("padding exceeds the output")?;
    let wo = ((wd - 1) * s[1] + kw)
        .checked_sub(p[1] + p[3])
        .ok_or("padding exceeds the output")?;
    let (cin_g, cout) = (cin / groups, cout_g * groups);
    let mut out = vec![0f32; n * cout * ho * wo];
    for b in 0..n {
        for ci in 0..cin {
            let g = ci / cin_g;
            for iy in 0..h {
                for ix in 0..wd {
                    let xv = x.data[((b * cin + ci) * h + iy) * wd + ix];
                    for co_g in 0..cout_g {
                        let co = g * cout_g + co_g;
                        for ky in 0..kh {
                            let oy = (iy * s[0] + ky) as isize - p[0] as isize;
                            if oy < 0 || oy >= ho as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ox = (ix * s[1] + kx) as isize - p[1] as isize;
                                if ox < 0 || ox >= wo as isize {
                                    continue;
                                }
                                let wv = w.data[((ci * cout_g + co_g) * kh + ky) * kw + kx];
                                out[((b * cout + co) * ho + oy as usize) * wo + ox as usize] +=
                                    xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(bias) = a.get(2) {
        for (i, v) in out.iter_mut().enumerate() {
            *v += bias.data[(i / (ho * wo)) % cout];
        }
    }
    Ok(Nd {
        dims: vec![n, cout, ho, wo],
        data: out,
    })
}
