//! A small reader for kernel BTF (`/sys/kernel/btf/vmlinux`): struct sizes, member offsets
//! (through anonymous structs and unions), enum values and tracepoint prototypes.
//!
//! Rust eBPF code has no CO-RE relocations, so userspace reads the few offsets the programs need
//! here and hands them over as a read-only global before load.
use std::path::Path;

/// The vmlinux BTF of the running kernel.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;

/// BTF kinds (`BTF_KIND_*`) this reader distinguishes.
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// Why BTF could not be read or lacks what we need.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("reading {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not BTF, or truncated.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A type or member the tracer needs is not in this kernel's BTF.
    #[error("kernel BTF has no {0}")]
    Missing(String),
}

/// Parsed BTF: the raw bytes and where each type id starts. Types are decoded on demand, so
/// reading the ~5 MiB vmlinux BTF costs little more than the file itself.
#[derive(Debug)]
pub struct Btf {
    data: Vec<u8>,
    /// Start of the type section in `data`.
    types_at: usize,
    /// Start and length of the string section in `data`.
    strings: (usize, usize),
    /// Offset (within the type section) of each type id; id 0 (void) has none.
    offsets: Vec<u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let bytes = data
        .get(at..at + 4)
        .ok_or(BtfError::Malformed("truncated type section"))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// One type's common header.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Where the type starts in `data`.
    at: usize,
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
}

/// Bytes of kind-specific data that follow a type's 12-byte header.
fn extra_len(kind: u32, vlen: usize) -> usize {
    match kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * vlen,
        kind::ENUM | kind::FUNC_PROTO => 8 * vlen,
        _ => 0,
    }
}

impl Btf {
    /// Reads and parses the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX))
    }

    /// Reads and parses a raw BTF file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(data)
    }

    /// Parses raw (little-endian) BTF bytes.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        Self::from_bytes(data.to_vec())
    }

    fn from_bytes(data: Vec<u8>) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let type_off = u32_at(&data, 8)? as usize;
        let type_len = u32_at(&data, 12)? as usize;
        let str_off = u32_at(&data, 16)? as usize;
        let str_len = u32_at(&data, 20)? as usize;
        let types_at = hdr_len + type_off;
        if data.len() < types_at + type_len {
            return Err(BtfError::Malformed("type section out of bounds"));
        }
        if data.len() < hdr_len + str_off + str_len {
            return Err(BtfError::Malformed("string section out of bounds"));
        }
        let mut offsets = vec![0u32];
        let mut at = 0usize;
        while at < type_len {
            let info = u32_at(&data, types_at + at + 4)?;
            offsets.push(
                u32::try_from(at).map_err(|_| BtfError::Malformed("type section too large"))?,
            );
            at += 12 + extra_len((info >> 24) & 0x1f, (info & 0xffff) as usize);
        }
        if at != type_len {
            return Err(BtfError::Malformed("truncated type section"));
        }
        Ok(Self {
            data,
            types_at,
            strings: (hdr_len + str_off, str_len),
            offsets,
        })
    }

    /// The NUL-terminated string at `off` of the string section.
    fn name(&self, off: u32) -> &[u8] {
        let (start, len) = self.strings;
        self.data
            .get(start + off as usize..start + len)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .unwrap_or_default()
    }

    fn head(&self, id: u32) -> Result<Head, BtfError> {
        if id == 0 {
            return Ok(Head {
                at: 0,
                name_off: 0,
                kind: 0,
                vlen: 0,
                kind_flag: false,
                size_or_type: 0,
            });
        }
        let offset = *self
            .offsets
            .get(id as usize)
            .ok_or(BtfError::Malformed("type id out of range"))?;
        let at = self.types_at + offset as usize;
        let info = u32_at(&self.data, at + 4)?;
        Ok(Head {
            at,
            name_off: u32_at(&self.data, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: u32_at(&self.data, at + 8)?,
        })
    }

    /// The `index`-th word after a type's header.
    fn word(&self, head: &Head, index: usize) -> Result<u32, BtfError> {
        u32_at(&self.data, head.at + 12 + 4 * index)
    }

    /// Ids of every type called `name`.
    fn ids_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (u32, Head)> + 'a {
        (1..self.offsets.len() as u32).filter_map(move |id| {
            let head = self.head(id).ok()?;
            (self.name(head.name_off) == name.as_bytes()).then_some((id, head))
        })
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Result<Head, BtfError> {
        for _ in 0..32 {
            let head = self.head(id)?;
            match head.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = head.size_or_type;
                }
                _ => return Ok(head),
            }
        }
        Err(BtfError::Malformed("typedef chain too long"))
    }

    /// The struct or union (not a forward declaration) called `name`.
    fn find_struct(&self, name: &str) -> Result<Head, BtfError> {
        self.ids_named(name)
            .map(|(_, head)| head)
            .find(|head| head.kind == kind::STRUCT || head.kind == kind::UNION)
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))
    }

    /// Whether a type called `name` exists (any kind).
    pub fn has_type(&self, name: &str) -> bool {
        self.ids_named(name).next().is_some()
    }

    /// Whether the kernel has a function called `name` (a BTF `FUNC`: one fentry/fexit programs
    /// can attach to).
    pub fn has_function(&self, name: &str) -> bool {
        self.ids_named(name)
            .any(|(_, head)| head.kind == kind::FUNC)
    }

    /// Size in bytes of struct `name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        Ok(self.find_struct(name)?.size_or_type)
    }

    /// Byte offset of `member` in struct `name`, looking through anonymous members.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let head = self.find_struct(name)?;
        self.find_member(&head, member, 0)?
            .map(|(bits, _)| bits / 8)
            .ok_or_else(|| BtfError::Missing(format!("member {name}.{member}")))
    }

    /// Type id of `member` in struct `name`.
    pub fn member_type(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let head = self.find_struct(name)?;
        self.find_member(&head, member, 0)?
            .map(|(_, id)| id)
            .ok_or_else(|| BtfError::Missing(format!("member {name}.{member}")))
    }

    /// (offset in bits, type id) of `member` inside the struct/union `head`, recursing into
    /// unnamed members.
    fn find_member(
        &self,
        head: &Head,
        member: &str,
        base: u32,
    ) -> Result<Option<(u32, u32)>, BtfError> {
        for index in 0..head.vlen {
            let name_off = self.word(head, 3 * index)?;
            let type_id = self.word(head, 3 * index + 1)?;
            let raw_offset = self.word(head, 3 * index + 2)?;
            let offset = if head.kind_flag {
                raw_offset & 0x00ff_ffff
            } else {
                raw_offset
            };
            let name = self.name(name_off);
            if name == member.as_bytes() {
                return Ok(Some((base + offset, type_id)));
            }
            if name.is_empty() {
                let inner = self.resolve(type_id)?;
                if (inner.kind == kind::STRUCT || inner.kind == kind::UNION)
                    && let Some(found) = self.find_member(&inner, member, base + offset)?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// If type `id` is an array: (element type id, element count).
    pub fn array_of(&self, id: u32) -> Result<Option<(u32, u32)>, BtfError> {
        let head = self.resolve(id)?;
        if head.kind != kind::ARRAY {
            return Ok(None);
        }
        Ok(Some((self.word(&head, 0)?, self.word(&head, 2)?)))
    }

    /// Name of type `id` after resolving typedefs, if it is a struct.
    pub fn struct_name(&self, id: u32) -> Result<Option<String>, BtfError> {
        let head = self.resolve(id)?;
        Ok((head.kind == kind::STRUCT)
            .then(|| String::from_utf8_lossy(self.name(head.name_off)).into_owned()))
    }

    /// Value of enumerator `name` in any enum.
    pub fn enum_value(&self, name: &str) -> Result<i64, BtfError> {
        for id in 1..self.offsets.len() as u32 {
            let head = self.head(id)?;
            let (stride, wide) = match head.kind {
                kind::ENUM => (2, false),
                kind::ENUM64 => (3, true),
                _ => continue,
            };
            for index in 0..head.vlen {
                if self.name(self.word(&head, stride * index)?) != name.as_bytes() {
                    continue;
                }
                let low = self.word(&head, stride * index + 1)?;
                return Ok(if wide {
                    let high = u64::from(self.word(&head, stride * index + 2)?);
                    ((high << 32) | u64::from(low)) as i64
                } else {
                    i64::from(low as i32)
                });
            }
        }
        Err(BtfError::Missing(format!("enumerator {name}")))
    }

    /// Number of arguments BTF tracepoint `name` passes to a program (the prototype of
    /// `btf_trace_NAME` minus its leading `void *`). `None` when the kernel has no such
    /// tracepoint.
    pub fn tracepoint_args(&self, name: &str) -> Result<Option<u32>, BtfError> {
        let typedef = format!("btf_trace_{name}");
        for (_, head) in self.ids_named(&typedef) {
            if head.kind != kind::TYPEDEF {
                continue;
            }
            let pointer = self.resolve(head.size_or_type)?;
            if pointer.kind != kind::PTR {
                continue;
            }
            let proto = self.resolve(pointer.size_or_type)?;
            if proto.kind == kind::FUNC_PROTO {
                return Ok(Some((proto.vlen as u32).saturating_sub(1)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    //! Parsing a hand-built BTF blob: anonymous members, enums, tracepoint prototypes.
    use super::*;

    /// Builds BTF bytes from (name, info, size_or_type, extra words) entries.
    struct Builder {
        strings: Vec<u8>,
        types: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                strings: vec![0],
                types: Vec::new(),
            }
        }
        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn ty(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, extra: &[u32]) {
            let name_off = self.string(name);
            for word in [name_off, (kind << 24) | vlen, size_or_type] {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
            for word in extra {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
        }
        fn build(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for word in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        // 1: int (4 bytes)
        b.ty("int", kind::INT, 0, 4, &[32]);
        // 2: struct inner { int x; int y; } size 8
        let (x, y) = (b.string("x"), b.string("y"));
        b.ty("", kind::STRUCT, 2, 8, &[x, 1, 0, y, 1, 32]);
        // 3: struct outer { int a; struct { x; y; }; } size 12, anonymous member at byte 4
        let a = b.string("a");
        b.ty("outer", kind::STRUCT, 2, 12, &[a, 1, 0, 0, 2, 32]);
        // 4: enum { MM_FILEPAGES = 0, MM_SWAPENTS = 2 }
        let (f, s) = (b.string("MM_FILEPAGES"), b.string("MM_SWAPENTS"));
        b.ty("", kind::ENUM, 2, 4, &[f, 0, s, 2]);
        // 5: func proto (void *, int, int) ; 6: ptr -> 5 ; 7: typedef btf_trace_foo -> 6
        b.ty("", kind::FUNC_PROTO, 3, 0, &[0, 0, 0, 1, 0, 1]);
        b.ty("", kind::PTR, 0, 5, &[]);
        b.ty("btf_trace_foo", kind::TYPEDEF, 0, 6, &[]);
        // 8: array of 4 outer
        b.ty("", kind::ARRAY, 0, 0, &[3, 1, 4]);
        b.build()
    }

    #[test]
    fn offsets_through_anonymous_members() {
        let btf = Btf::parse(&sample()).expect("parses");
        assert_eq!(btf.struct_size("outer").expect("size"), 12);
        assert_eq!(btf.member_offset("outer", "a").expect("a"), 0);
        assert_eq!(btf.member_offset("outer", "y").expect("y"), 8);
        assert!(matches!(
            btf.member_offset("outer", "z"),
            Err(BtfError::Missing(_))
        ));
        assert!(matches!(btf.struct_size("nope"), Err(BtfError::Missing(_))));
    }

    #[test]
    fn enums_prototypes_arrays() {
        let btf = Btf::parse(&sample()).expect("parses");
        assert_eq!(btf.enum_value("MM_SWAPENTS").expect("enum"), 2);
        assert_eq!(btf.tracepoint_args("foo").expect("proto"), Some(2));
        assert_eq!(btf.tracepoint_args("bar").expect("proto"), None);
        assert_eq!(btf.array_of(8).expect("array"), Some((3, 4)));
        assert_eq!(btf.struct_name(3).expect("name"), Some("outer".to_owned()));
        assert!(btf.has_type("btf_trace_foo"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(Btf::parse(b"nope"), Err(BtfError::Malformed(_))));
        let mut blob = sample();
        blob.truncate(40);
        assert!(Btf::parse(&blob).is_err());
    }

    #[test]
    fn running_kernel_has_what_the_tracer_needs() {
        let btf = Btf::from_sys_fs().expect("vmlinux BTF");
        assert!(btf.member_offset("mm_struct", "owner").expect("owner") > 0);
        assert!(btf.member_offset("task_struct", "tgid").expect("tgid") > 0);
        assert_eq!(btf.enum_value("MM_SWAPENTS").expect("enum"), 2);
        assert_eq!(btf.tracepoint_args("rss_stat").expect("proto"), Some(2));
    }
}
