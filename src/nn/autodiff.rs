//! The layers on burn's autodiff backend: one graph node per layer, its backward delegated to
//! the inner backend's backward operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use super::layer::*;

#[derive(Debug, Clone, Copy)]
enum Layer {
    Down,
    Up,
    LeakyBn { eps: f64 },
}

impl<B: LayerBackward> Backward<B, 3> for Layer {
    /// The checkpointed input and weight (the bias's gradient needs only dy), and the
    /// forward's extra outputs (BatchNorm's batch mean and variance).
    type State = (NodeId, NodeId, Vec<FloatTensor<B>>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (xs, ws, saved) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(xs);
        let w: FloatTensor<B> = checkpointer.retrieve_node_output(ws);
        let need = [node_x.is_some(), node_w.is_some(), node_b.is_some()];
        let g = match self {
            Layer::Down => B::conv_down_backward(x, w, dy, need),
            Layer::Up => B::conv_up_backward(x, w, dy, need),
            Layer::LeakyBn { eps } => {
                let stats: [FloatTensor<B>; 2] = saved.try_into().expect("mean and variance");
                B::leaky_bn_backward(x, w, dy, stats, eps, need)
            }
        };
        for (node, grad) in [(node_x, g.x), (node_w, g.weight), (node_b, g.bias)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The output activation's graph node; its state is the activation's output.
#[derive(Debug, Clone, Copy)]
struct ActivationNode(Activation);

impl<B: LayerBackward> Backward<B, 1> for ActivationNode {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::activation_backward(ops.state, dy, self.0));
        }
    }
}

/// The graph node of [`LayerBackend::swap_outer`], its own inverse.
#[derive(Debug, Clone, Copy)]
struct SwapOuterNode;

impl<B: LayerBackward> Backward<B, 1> for SwapOuterNode {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::swap_outer(dy));
        }
    }
}

/// Runs `layer` on the inner backend and records it in the graph; the extra outputs (batch
/// statistics) come back untracked.
fn autodiff_layer<B: LayerBackward, C: CheckpointStrategy>(
    layer: Layer,
    x: FloatTensor<Autodiff<B, C>>,
    w: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
) -> (FloatTensor<Autodiff<B, C>>, Vec<FloatTensor<B>>) {
    let run = |x, w, b| match layer {
        Layer::Down => (B::conv_down(x, w, b), Vec::new()),
        Layer::Up => (B::conv_up(x, w, b), Vec::new()),
        Layer::LeakyBn { eps } => {
            let [y, mean, var] = B::leaky_bn(x, w, b, eps);
            (y, vec![mean, var])
        }
    };
    match layer
        .prepare::<C>([x.node.clone(), w.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let ids = (prep.checkpoint(&x), prep.checkpoint(&w));
            let (y, extra) = run(x.primitive, w.primitive, b.primitive);
            let state = (ids.0, ids.1, extra.clone());
            (prep.finish(state, y), extra)
        }
        OpsKind::UnTracked(prep) => {
            let (y, extra) = run(x.primitive, w.primitive, b.primitive);
            (prep.finish(y), extra)
        }
    }
}

impl<B: LayerBackward, C: CheckpointStrategy> LayerBackend for Autodiff<B, C> {
    const CHANNEL_MAJOR: bool = B::CHANNEL_MAJOR;

    fn keep_mask(x: &FloatTensor<Self>, keep: f64) -> FloatTensor<Self> {
        Self::from_inner(B::keep_mask(&x.primitive, keep))
    }

    fn swap_outer(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SwapOuterNode
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((), B::swap_outer(x.primitive)),
            OpsKind::UnTracked(prep) => prep.finish(B::swap_outer(x.primitive)),
        }
    }

    fn activation(x: FloatTensor<Self>, f: Activation) -> FloatTensor<Self> {
        match ActivationNode(f)
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::activation(x.primitive, f);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::activation(x.primitive, f)),
        }
    }
    fn conv_down(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        autodiff_layer::<B, C>(Layer::Down, x, w, b).0
    }
    fn conv_up(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        autodiff_layer::<B, C>(Layer::Up, x, w, b).0
    }
    fn leaky_bn(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        let (y, mut stats) = autodiff_layer::<B, C>(Layer::LeakyBn { eps }, x, gamma, beta);
        let var = stats.pop().expect("variance");
        let mean = stats.pop().expect("mean");
        [y, Self::from_inner(mean), Self::from_inner(var)]
    }

    fn leaky_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        leaky_affine_ops::<Self>(x, scale, shift)
    }
}
