//! Parameter paths that equal torchvision's `state_dict` keys.
//!
//! torchvision assembles MobileNets from `nn.Sequential`s, so most of its keys are positional:
//! `features.4.block.2.fc1.weight`. burn's `#[derive(Module)]` names every child after its Rust
//! field, which would force either numeric field names or a remapping table at load time. The
//! [`torchvision_module!`] macro instead implements [`burn::module::Module`] by hand for a struct
//! with readable, typed fields, giving each child the torchvision path it is stored under. Every
//! other module behaviour (device moves, `valid`/`train`, mapping) delegates to each child in
//! turn, exactly as the derive does.

use burn::module::{ModuleMapper, ModuleVisitor};

/// Enters each `.`-separated segment of `path`.
pub(crate) fn enter_visitor<V: ModuleVisitor>(visitor: &mut V, path: &str, container: &str) {
    for segment in path.split('.') {
        visitor.enter_module(segment, container);
    }
}

/// Leaves each `.`-separated segment of `path`, innermost first.
pub(crate) fn exit_visitor<V: ModuleVisitor>(visitor: &mut V, path: &str, container: &str) {
    for segment in path.rsplit('.') {
        visitor.exit_module(segment, container);
    }
}

/// [`enter_visitor`] for a mapper.
pub(crate) fn enter_mapper<M: ModuleMapper>(mapper: &mut M, path: &str, container: &str) {
    for segment in path.split('.') {
        mapper.enter_module(segment, container);
    }
}

/// [`exit_visitor`] for a mapper.
pub(crate) fn exit_mapper<M: ModuleMapper>(mapper: &mut M, path: &str, container: &str) {
    for segment in path.rsplit('.') {
        mapper.exit_module(segment, container);
    }
}

/// Implements burn's `Module` (and its display traits) for a struct whose children are stored
/// under torchvision's `state_dict` paths.
///
/// ```text
/// torchvision_module!(InvertedResidual {
///     children {
///         expand: |b: &Self| b.layer_path(0),   // a child and the path it is stored under
///         ...
///     }
///     lists {
///         blocks: |index: usize| (index + 1).to_string(),   // a Vec child: each item's path
///     }
///     state { use_residual }   // plain data, cloned as is
///     caches { packed }        // optional: derived data, emptied (`Default`) by every
///                              // module operation and not displayed
/// });
/// ```
///
/// Paths may contain dots (`"classifier.3"`); each segment is entered as one module level, so a
/// burn-store snapshot sees exactly torchvision's key.
macro_rules! torchvision_module {
    (
        $ty:ident {
            children { $( $child:ident : $path:expr ),* $(,)? }
            lists { $( $list:ident : $list_path:expr ),* $(,)? }
            state { $( $state:ident ),* $(,)? }
            $( caches { $( $cache:ident ),* $(,)? } )?
        }
    ) => {
        impl burn::module::Module for $ty {
            fn visit<V: burn::module::ModuleVisitor>(&self, visitor: &mut V) {
                const CONTAINER: &str = concat!("Struct:", stringify!($ty));
                $(
                    let path: String = ($path)(self);
                    $crate::torch_paths::enter_visitor(visitor, &path, CONTAINER);
                    burn::module::Module::visit(&self.$child, visitor);
                    $crate::torch_paths::exit_visitor(visitor, &path, CONTAINER);
                )*
                $(
                    for (index, item) in self.$list.iter().enumerate() {
                        let path: String = ($list_path)(index);
                        $crate::torch_paths::enter_visitor(visitor, &path, CONTAINER);
                        burn::module::Module::visit(item, visitor);
                        $crate::torch_paths::exit_visitor(visitor, &path, CONTAINER);
                    }
                )*
            }

            fn map<M: burn::module::ModuleMapper>(self, mapper: &mut M) -> Self {
                const CONTAINER: &str = concat!("Struct:", stringify!($ty));
                // Paths are computed while `self` is whole; the fields are moved out after.
                let child_paths: Vec<String> = vec![$( ($path)(&self) ),*];
                let Self { $( $child, )* $( $list, )* $( $state, )* .. } = self;
                let mut child_paths = child_paths.into_iter();
                $(
                    let path = child_paths.next().unwrap_or_default();
                    $crate::torch_paths::enter_mapper(mapper, &path, CONTAINER);
                    let $child = burn::module::Module::map($child, mapper);
                    $crate::torch_paths::exit_mapper(mapper, &path, CONTAINER);
                )*
                $(
                    let $list = $list
                        .into_iter()
                        .enumerate()
                        .map(|(index, item)| {
                            let path: String = ($list_path)(index);
                            $crate::torch_paths::enter_mapper(mapper, &path, CONTAINER);
                            let item = burn::module::Module::map(item, mapper);
                            $crate::torch_paths::exit_mapper(mapper, &path, CONTAINER);
                            item
                        })
                        .collect();
                )*
                Self { $( $child, )* $( $list, )* $( $state, )* $($( $cache: Default::default(), )*)? }
            }

            fn collect_devices(&self, devices: burn::module::Devices) -> burn::module::Devices {
                $( let devices = burn::module::Module::collect_devices(&self.$child, devices); )*
                $( let devices = burn::module::Module::collect_devices(&self.$list, devices); )*
                devices
            }

            fn to_device(self, device: &burn::tensor::Device) -> Self {
                Self {
                    $( $child: burn::module::Module::to_device(self.$child, device), )*
                    $( $list: burn::module::Module::to_device(self.$list, device), )*
                    $( $state: self.$state, )*
                    $($( $cache: Default::default(), )*)?
                }
            }

            fn fork(self, device: &burn::tensor::Device) -> Self {
                Self {
                    $( $child: burn::module::Module::fork(self.$child, device), )*
                    $( $list: burn::module::Module::fork(self.$list, device), )*
                    $( $state: self.$state, )*
                    $($( $cache: Default::default(), )*)?
                }
            }

            fn valid(&self) -> Self {
                Self {
                    $( $child: burn::module::Module::valid(&self.$child), )*
                    $( $list: burn::module::Module::valid(&self.$list), )*
                    $( $state: self.$state.clone(), )*
                    $($( $cache: Default::default(), )*)?
                }
            }

            fn train(self) -> Self {
                Self {
                    $( $child: burn::module::Module::train(self.$child), )*
                    $( $list: burn::module::Module::train(self.$list), )*
                    $( $state: self.$state, )*
                    $($( $cache: Default::default(), )*)?
                }
            }

            fn materialize(self) -> Self {
                Self {
                    $( $child: burn::module::Module::materialize(self.$child), )*
                    $( $list: burn::module::Module::materialize(self.$list), )*
                    $( $state: self.$state, )*
                    $($( $cache: Default::default(), )*)?
                }
            }
        }

        impl burn::module::ModuleDisplayDefault for $ty {
            fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
                content
                    .set_top_level_type(stringify!($ty))
                    $( .add(stringify!($child), &self.$child) )*
                    $( .add(stringify!($list), &self.$list) )*
                    $( .add_debug_attribute(stringify!($state), &self.$state) )*
                    .optional()
            }

            fn num_params(&self) -> usize {
                burn::module::Module::num_params(self)
            }
        }

        $crate::torch_paths::module_display!($ty);
    };
}

pub(crate) use torchvision_module;

/// burn's `ModuleDisplay` and `Display` for a module type, as its derive writes them: the
/// display impls shared by [`torchvision_module!`] and [`enum_module!`].
macro_rules! module_display {
    ($ty:ident) => {
        impl burn::module::ModuleDisplay for $ty {}

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let formatted = burn::module::ModuleDisplay::format(self, Default::default());
                write!(f, "{formatted}")
            }
        }
    };
}

pub(crate) use module_display;

/// Implements burn's `Module` for an enum whose every variant holds one module, delegating to
/// it without a path segment of its own (burn's derive enters the variant's name), so that a
/// list of mixed blocks keeps the reference implementation's keys: `blocks.2.4.attn...`.
macro_rules! enum_module {
    ($ty:ident { $( $variant:ident ),+ $(,)? }) => {
        impl burn::module::Module for $ty {
            fn visit<V: burn::module::ModuleVisitor>(&self, visitor: &mut V) {
                match self { $( Self::$variant(inner) => burn::module::Module::visit(inner, visitor), )+ }
            }

            fn map<M: burn::module::ModuleMapper>(self, mapper: &mut M) -> Self {
                match self { $( Self::$variant(inner) => Self::$variant(burn::module::Module::map(inner, mapper)), )+ }
            }

            fn collect_devices(&self, devices: burn::module::Devices) -> burn::module::Devices {
                match self { $( Self::$variant(inner) => burn::module::Module::collect_devices(inner, devices), )+ }
            }

            fn to_device(self, device: &burn::tensor::Device) -> Self {
                match self { $( Self::$variant(inner) => Self::$variant(burn::module::Module::to_device(inner, device)), )+ }
            }

            fn fork(self, device: &burn::tensor::Device) -> Self {
                match self { $( Self::$variant(inner) => Self::$variant(burn::module::Module::fork(inner, device)), )+ }
            }

            fn valid(&self) -> Self {
                match self { $( Self::$variant(inner) => Self::$variant(burn::module::Module::valid(inner)), )+ }
            }

            fn train(self) -> Self {
                match self { $( Self::$variant(inner) => Self::$variant(burn::module::Module::train(inner)), )+ }
            }

            fn materialize(self) -> Self {
                match self { $( Self::$variant(inner) => Self::$variant(burn::module::Module::materialize(inner)), )+ }
            }
        }

        impl burn::module::ModuleDisplayDefault for $ty {
            fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
                match self { $( Self::$variant(inner) => burn::module::ModuleDisplayDefault::content(inner, content), )+ }
            }

            fn num_params(&self) -> usize {
                burn::module::Module::num_params(self)
            }
        }

        $crate::torch_paths::module_display!($ty);
    };
}

pub(crate) use enum_module;
