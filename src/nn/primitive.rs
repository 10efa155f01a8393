//! Between burn's typed tensors and the float primitives its backend operations take and
//! return: the layer ops work on primitives, the networks on `Tensor`s.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// A backend's float primitive as a `D`-dimensional tensor.
pub(crate) fn tensor<B: Backend, const D: usize>(x: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

/// A float tensor's primitive, for the backend operations.
pub(crate) fn primitive<B: Backend, const D: usize>(x: Tensor<B, D>) -> FloatTensor<B> {
    x.into_primitive().tensor()
}
