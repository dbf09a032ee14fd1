//! The subset of `onnx.proto` (ONNX IR) that hwnas writes and reads, as prost messages.
//!
//! Field numbers follow onnx/onnx.proto; fields hwnas never uses are left out, and prost skips
//! them when decoding. Hand-written so the build needs no protoc and no ONNX Runtime.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto.AttributeType` values hwnas uses.
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const INTS: i32 = 7;
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// A tensor value (the `Constant` node's `value`).
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
}

/// `TensorProto.DataType` values hwnas uses.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32, INT16, INT8, UINT16, UINT8, BOOL and FLOAT16 (as bits) values, when not raw.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Where the values live when `data_location` is external: `location`, `offset`, `length`.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// 0: in this message; 1: in the file `external_data` names.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, tag = "1")]
    pub dim_value: i64,
    /// A symbolic dimension (`batch_size`): `dim_value` is then 0.
    #[prost(string, tag = "2")]
    pub dim_param: String,
}

impl TensorProto {
    /// An fp32 tensor stored as little-endian raw bytes.
    pub fn from_f32(name: &str, dims: &[i64], values: &[f32]) -> Self {
        TensorProto {
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    fn from_raw(name: &str, dims: &[i64], data_type: i32, raw_data: Vec<u8>) -> Self {
        TensorProto {
            dims: dims.to_vec(),
            data_type,
            name: name.into(),
            raw_data,
            ..Default::default()
        }
    }

    /// An fp16 tensor (the values rounded to the nearest fp16).
    pub fn from_f16(name: &str, dims: &[i64], values: &[f32]) -> Self {
        let raw = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        Self::from_raw(name, dims, data_type::FLOAT16, raw)
    }

    pub fn from_u8(name: &str, dims: &[i64], values: &[u8]) -> Self {
        Self::from_raw(name, dims, data_type::UINT8, values.to_vec())
    }

    pub fn from_i8(name: &str, dims: &[i64], values: &[i8]) -> Self {
        let raw = values.iter().map(|v| v.to_le_bytes()[0]).collect();
        Self::from_raw(name, dims, data_type::INT8, raw)
    }

    pub fn from_i32(name: &str, dims: &[i64], values: &[i32]) -> Self {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_raw(name, dims, data_type::INT32, raw)
    }

    /// The values of a numeric tensor as f32 (exact for fp16, 8-bit and small integers), from
    /// `raw_data` or the typed field; `None` for a type hwnas does not read.
    pub fn numeric_values(&self) -> Option<Vec<f32>> {
        let raw = &self.raw_data;
        match self.data_type {
            data_type::FLOAT => self.f32_values(),
            data_type::INT64 => Some(self.i64_values()?.into_iter().map(|v| v as f32).collect()),
            data_type::FLOAT16 if !raw.is_empty() => Some(
                raw.chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
            ),
            data_type::UINT8 if !raw.is_empty() => {
                Some(raw.iter().map(|&b| f32::from(b)).collect())
            }
            data_type::INT8 if !raw.is_empty() => {
                Some(raw.iter().map(|&b| f32::from(b as i8)).collect())
            }
            data_type::INT32 if !raw.is_empty() => Some(
                raw.chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The fp32 values, from `raw_data` or `float_data`; `None` for another data type.
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        if self.data_type != data_type::FLOAT {
            return None;
        }
        if self.raw_data.is_empty() {
            return Some(self.float_data.clone());
        }
        Some(
            self.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

impl TensorProto {
    /// The int64 values, from `raw_data` or `int64_data`; `None` for another data type.
    pub fn i64_values(&self) -> Option<Vec<i64>> {
        if self.data_type != data_type::INT64 {
            return None;
        }
        if self.raw_data.is_empty() {
            return Some(self.int64_data.clone());
        }
        Some(
            self.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        )
    }
}

impl ValueInfoProto {
    /// A named fp32 tensor of a fixed shape.
    pub fn f32_tensor(name: &str, dims: &[i64]) -> Self {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: data_type::FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                dim_value: d,
                                ..Default::default()
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }

    /// The fixed dims of a tensor value, if it declares them.
    pub fn dims(&self) -> Option<Vec<i64>> {
        let shape = self.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?;
        Some(shape.dim.iter().map(|d| d.dim_value).collect())
    }
}

impl NodeProto {
    /// The attribute called `name`, if the node has it.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }
}

impl AttributeProto {
    pub fn int(name: &str, i: i64) -> Self {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::INT,
            i,
            ..Default::default()
        }
    }
    pub fn ints(name: &str, ints: &[i64]) -> Self {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::INTS,
            ints: ints.to_vec(),
            ..Default::default()
        }
    }
    pub fn float(name: &str, f: f32) -> Self {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::FLOAT,
            f,
            ..Default::default()
        }
    }
    pub fn string(name: &str, s: &str) -> Self {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::STRING,
            s: s.as_bytes().to_vec(),
            ..Default::default()
        }
    }
}

impl ModelProto {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}
