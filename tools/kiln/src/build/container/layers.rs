//! The precedence every container setting follows, written once: the manifest entry's value
//! when it sets the field (even to an empty value), else the image label's. What comes after
//! (the image config, the built-in default) is the caller's, since it differs by field. A few
//! fields take the first value that is set and not empty instead, as LinuxKit reads them, and
//! two lists (`capabilities`, `binds`) may be added to the label's with `.add`.
//! Runs in: `kiln` on the build host. Pure.

/// A setting as the manifest entry and the image label give it.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a, T> {
    pub manifest: &'a T,
    pub label: &'a T,
}

impl<'a, T> Layers<'a, T> {
    /// The manifest's value of `field`, else the label's.
    pub fn get<V: Clone>(&self, field: impl Fn(&T) -> &Option<V>) -> Option<V> {
        self.get_ref(field).cloned()
    }

    /// [`Layers::get`] without copying the value.
    pub fn get_ref<V>(&self, field: impl Fn(&T) -> &Option<V>) -> Option<&'a V> {
        let (manifest, label) = (self.manifest, self.label);
        field(manifest).as_ref().or_else(|| field(label).as_ref())
    }

    /// The manifest's list `field`, else the label's, else none.
    pub fn list<V: Clone>(&self, field: impl Fn(&T) -> &Option<Vec<V>>) -> Vec<V> {
        self.get(field).unwrap_or_default()
    }

    /// The first of the manifest's and the label's values of `field` that is not empty.
    pub fn non_empty(&self, field: impl Fn(&T) -> &Option<String>) -> Option<String> {
        [field(self.manifest), field(self.label)]
            .into_iter()
            .flatten()
            .find(|value| !value.is_empty())
            .cloned()
    }

    /// The list `field` with the field path of each item: the manifest's list when it sets
    /// one (`NAME[i]`), else the label's (`label NAME[i]`) followed by the manifest's `add`
    /// list (`NAME.add[i]`).
    pub fn with_added<V>(
        &self,
        name: &str,
        field: impl Fn(&T) -> &Option<Vec<V>>,
        add: impl Fn(&T) -> &Option<Vec<V>>,
    ) -> Vec<(String, &'a V)> {
        let (manifest, label) = (self.manifest, self.label);
        let numbered = |prefix: String, list: &'a Option<Vec<V>>| {
            list.iter()
                .flatten()
                .enumerate()
                .map(move |(i, value)| (format!("{prefix}[{i}]"), value))
        };
        match field(manifest) {
            Some(_) => numbered(name.to_owned(), field(manifest)).collect(),
            None => numbered(format!("label {name}"), field(label))
                .chain(numbered(format!("{name}.add"), add(manifest)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Settings {
        text: Option<String>,
        list: Option<Vec<u8>>,
        add: Option<Vec<u8>>,
    }

    fn layers<'a>(manifest: &'a Settings, label: &'a Settings) -> Layers<'a, Settings> {
        Layers { manifest, label }
    }

    #[test]
    fn the_manifest_wins_even_when_empty_and_the_label_fills_in() {
        let label = Settings {
            text: Some("label".into()),
            list: Some(vec![1]),
            ..Settings::default()
        };
        let empty = Settings {
            text: Some(String::new()),
            list: Some(Vec::new()),
            ..Settings::default()
        };
        assert_eq!(layers(&empty, &label).get(|s| &s.text), Some(String::new()));
        assert_eq!(layers(&empty, &label).list(|s| &s.list), Vec::<u8>::new());
        let unset = Settings::default();
        assert_eq!(
            layers(&unset, &label).get(|s| &s.text),
            Some("label".into())
        );
        assert_eq!(layers(&unset, &unset).list(|s| &s.list), Vec::<u8>::new());
    }

    #[test]
    fn non_empty_skips_empty_values() {
        let label = Settings {
            text: Some("label".into()),
            ..Settings::default()
        };
        let empty = Settings {
            text: Some(String::new()),
            ..Settings::default()
        };
        assert_eq!(
            layers(&empty, &label).non_empty(|s| &s.text),
            Some("label".into())
        );
        assert_eq!(layers(&empty, &empty).non_empty(|s| &s.text), None);
    }

    #[test]
    fn add_extends_the_label_unless_the_manifest_replaces_the_list() {
        let label = Settings {
            list: Some(vec![1, 2]),
            ..Settings::default()
        };
        let adding = Settings {
            add: Some(vec![3]),
            ..Settings::default()
        };
        let added = layers(&adding, &label).with_added("caps", |s| &s.list, |s| &s.add);
        let named: Vec<(String, u8)> = added.into_iter().map(|(f, v)| (f, *v)).collect();
        assert_eq!(
            named,
            [
                ("label caps[0]".into(), 1),
                ("label caps[1]".into(), 2),
                ("caps.add[0]".into(), 3)
            ]
        );
        let replacing = Settings {
            list: Some(vec![9]),
            add: Some(vec![3]),
            ..Settings::default()
        };
        let replaced = layers(&replacing, &label).with_added("caps", |s| &s.list, |s| &s.add);
        assert_eq!(replaced, [("caps[0]".to_owned(), &9)]);
    }
}
