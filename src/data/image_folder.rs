//! An image-classification dataset laid out as torchvision's `datasets.ImageFolder` reads it:
//! `root/<class name>/**/<image>`, classes in sorted order, images in torchvision's order.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::error::io_error;

/// File extensions torchvision's `ImageFolder` accepts (`IMG_EXTENSIONS`), compared in lower
/// case.
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
];

/// A folder of labelled images: `root/cat/1.jpg`, `root/dog/a/2.png`, ...
///
/// Classes are the sub-directories of `root`, sorted by name; class `i` is the `i`-th. Images are
/// the files with an [`IMAGE_EXTENSIONS`] extension anywhere below a class directory, in
/// torchvision's order (`make_dataset`: directories walked in sorted order of their paths,
/// files sorted by name within each), so a model trained here and one trained with
/// torchvision's `ImageFolder` number the classes alike.
///
/// ```no_run
/// use mobilenet_burn::data::ImageFolder;
///
/// # fn main() -> Result<(), mobilenet_burn::Error> {
/// let dataset = ImageFolder::new("imagenette2/train")?;
/// println!("{} images of {} classes", dataset.len(), dataset.classes().len());
/// let (train, validation) = dataset.split(0.1, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Lists the dataset under `root` (nothing is decoded yet).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a directory cannot be read, [`Error::Dataset`] if `root` has no class
    /// directory or a class has no image (torchvision refuses both).
    pub fn new(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref().to_path_buf();
        let mut classes = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(io_error(&root))? {
            let entry = entry.map_err(io_error(&root))?;
            // `entry.is_dir()` of `os.scandir`: follows symbolic links.
            if entry.path().is_dir() {
                classes.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        classes.sort();
        if classes.is_empty() {
            return Err(Error::Dataset {
                path: root,
                reason: "no class directory in it".into(),
            });
        }
        let mut samples = Vec::new();
        let mut empty = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let before = samples.len();
            let mut directories = Vec::new();
            walk(&root, &root.join(class), 0, &mut directories)?;
            // `sorted(os.walk(...))`: by the directory's path.
            directories.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, mut files) in directories {
                files.sort_by(|a, b| a.0.cmp(&b.0));
                samples.extend(
                    files
                        .into_iter()
                        .filter(|(name, _)| has_image_extension(name))
                        .map(|(_, path)| (path, label)),
                );
            }
            if samples.len() == before {
                empty.push(class.clone());
            }
        }
        if !empty.is_empty() {
            return Err(Error::Dataset {
                path: root,
                reason: format!(
                    "no image in the class directories {empty:?} (extensions {})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            });
        }
        Ok(Self {
            root,
            classes,
            samples,
        })
    }

    /// The dataset's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names, in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every image with its label, in torchvision's order.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no image (never true of a dataset [`new`](Self::new) returned).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// A reproducible split into training and validation indices: per class, a `fraction` of
    /// its images (rounded, at least one when the class has two or more) chosen by a seeded
    /// shuffle go to validation, so every class is represented on both sides in proportion.
    /// Both lists are in dataset order.
    pub fn split(&self, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let fraction = fraction.clamp(0.0, 1.0);
        let mut validation = Vec::new();
        for label in 0..self.classes.len() {
            let mut members: Vec<usize> = (0..self.samples.len())
                .filter(|&index| self.samples[index].1 == label)
                .collect();
            let mut draws = super::transforms::SeededDraws::for_item(seed, 0, label as u64);
            super::transforms::shuffle(&mut members, &mut draws);
            let mut count = (members.len() as f64 * fraction).round() as usize;
            if fraction > 0.0 && members.len() >= 2 {
                count = count.clamp(1, members.len() - 1);
            }
            validation.extend_from_slice(&members[..count.min(members.len())]);
        }
        validation.sort_unstable();
        let train = (0..self.samples.len())
            .filter(|index| validation.binary_search(index).is_err())
            .collect();
        (train, validation)
    }
}

/// `name` ends with one of [`IMAGE_EXTENSIONS`], ignoring case.
fn has_image_extension(name: &str) -> bool {
    let lower = name.to_lowercase();
    IMAGE_EXTENSIONS
        .iter()
        .any(|extension| lower.ends_with(extension))
}

/// Directory levels below a class directory that [`ImageFolder::new`] descends: a link cycle (a
/// link to a parent directory) would otherwise be walked forever, as
/// `os.walk(followlinks=True)` does.
pub const MAX_DEPTH: usize = 32;

/// Every directory below and including `directory` (following links), each with its files
/// (name, path).
fn walk(
    root: &Path,
    directory: &Path,
    depth: usize,
    out: &mut Vec<(String, Vec<(String, PathBuf)>)>,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Dataset {
            path: root.to_path_buf(),
            reason: format!(
                "{} is nested more than {MAX_DEPTH} directories deep (a link cycle?)",
                directory.display()
            ),
        });
    }
    let mut files = Vec::new();
    let mut children = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(io_error(directory))? {
        let entry = entry.map_err(io_error(directory))?;
        let path = entry.path();
        if path.is_dir() {
            children.push(path);
        } else {
            files.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    out.push((directory.to_string_lossy().into_owned(), files));
    for child in children {
        walk(root, &child, depth + 1, out)?;
    }
    Ok(())
}
