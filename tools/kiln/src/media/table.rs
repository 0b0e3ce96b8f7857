//! The partition tables of Kiln's disks, each around one FAT partition that starts at 1 MiB:
//! a GPT whose one partition is the EFI system partition (raw-efi, qcow2-efi), written by the
//! `gpt` crate behind its protective MBR, and an MBR whose one partition is active and whose
//! boot code is syslinux's (raw-bios). GUIDs and the disk signature are given, so a disk of
//! the same partition has the same bytes.
//! Runs in: `kiln build` on the build host. Writes only the disk file it is given.

use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use fatfs::FatType;
use gpt::disk::LogicalBlockSize;
use gpt::mbr::{PartRecord, ProtectiveMBR};
use gpt::partition_types;
use uuid::Uuid;

const SECTOR: u64 = 512;
/// Where the partition starts, and the room left after it for the backup GPT.
pub const ALIGN: u64 = 1 << 20;

/// Creates `out`, `len` bytes for a partition of the given length, with the partition image at
/// `partition` copied to [`ALIGN`]; returns it and the partition's length in whole sectors.
fn disk_with(
    partition: &Path,
    out: &Path,
    len: impl FnOnce(u64) -> u64,
) -> Result<(fs::File, u64)> {
    let mut from = fs::File::open(partition)
        .with_context(|| format!("cannot open {}", partition.display()))?;
    let part_len = from
        .metadata()
        .with_context(|| format!("cannot read {}", partition.display()))?
        .len()
        .div_ceil(SECTOR)
        * SECTOR;
    let mut disk = super::create_sized(out, len(part_len))?;
    disk.seek(SeekFrom::Start(ALIGN))
        .and_then(|_| io::copy(&mut from, &mut disk))
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok((disk, part_len))
}

/// The sectors of `bytes`, as an MBR's 32-bit field holds them (a larger disk is marked full,
/// as GPT's protective MBR is).
fn sectors32(bytes: u64) -> u32 {
    u32::try_from(bytes / SECTOR).unwrap_or(u32::MAX)
}

/// Writes `out`: a GPT disk whose one partition, the EFI system partition named `name`, holds
/// the FAT image at `esp`.
pub fn gpt_disk(
    esp: &Path,
    name: &str,
    disk_guid: Uuid,
    part_guid: Uuid,
    out: &Path,
) -> Result<()> {
    let (mut disk, part_len) = disk_with(esp, out, |part| ALIGN + part + ALIGN)?;
    let at = || format!("cannot write the partition table of {}", out.display());
    let total = disk.metadata().with_context(at)?.len();
    ProtectiveMBR::with_lb_size(sectors32(total).saturating_sub(1))
        .overwrite_lba0(&mut disk)
        .with_context(at)?;
    let mut table = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(disk, Some(disk_guid))
        .with_context(at)?;
    table
        .add_partition_at(
            name,
            1,
            ALIGN / SECTOR,
            part_len / SECTOR,
            partition_types::EFI,
            0,
        )
        .with_context(at)?;
    let mut partitions = table.take_partitions();
    for partition in partitions.values_mut() {
        partition.part_guid = part_guid;
    }
    table.update_partitions(partitions).with_context(at)?;
    let disk = table.write().with_context(at)?;
    disk.sync_all().with_context(at)?;
    Ok(())
}

/// The MBR partition type of a FAT file system addressed by LBA.
fn mbr_type(fat: FatType) -> u8 {
    match fat {
        FatType::Fat12 => 0x01,
        FatType::Fat16 => 0x0e,
        FatType::Fat32 => 0x0c,
    }
}

/// Writes `out`: an MBR disk with `boot_code` whose one partition, active, holds the FAT image
/// at `partition`; `signature` is the disk's.
pub fn mbr_disk(
    partition: &Path,
    fat: FatType,
    boot_code: &[u8],
    signature: [u8; 4],
    out: &Path,
) -> Result<()> {
    let at = || format!("cannot write the partition table of {}", out.display());
    let code: [u8; 440] = boot_code
        .get(..440)
        .and_then(|code| code.try_into().ok())
        .with_context(|| format!("{}: the boot code is shorter than 440 bytes", out.display()))?;
    let (mut disk, part_len) = disk_with(partition, out, |part| ALIGN + part)?;
    let mut mbr = ProtectiveMBR::new();
    mbr.set_bootcode(code);
    mbr.set_disk_signature(signature);
    mbr.set_partition(
        0,
        PartRecord {
            boot_indicator: 0x80,
            // CHS fields past what CHS can address, as for any disk booted by LBA.
            start_head: 0xfe,
            start_sector: 0xff,
            start_track: 0xff,
            os_type: mbr_type(fat),
            end_head: 0xfe,
            end_sector: 0xff,
            end_track: 0xff,
            lb_start: sectors32(ALIGN),
            lb_size: sectors32(part_len),
        },
    )
    .with_context(at)?;
    mbr.overwrite_lba0(&mut disk).with_context(at)?;
    disk.sync_all().with_context(at)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("part.img");
        let bytes: Vec<u8> = (0..3 * 512 + 100u32).map(|i| (i % 241) as u8).collect();
        fs::write(&path, bytes).expect("partition");
        path
    }

    #[test]
    fn the_gpt_disk_has_one_efi_partition_with_the_given_guids_and_its_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let part = partition(dir.path());
        let disk = dir.path().join("disk.img");
        let (disk_guid, part_guid) = (Uuid::from_u128(0x1234), Uuid::from_u128(0x5678));
        gpt_disk(&part, "ESP", disk_guid, part_guid, &disk).expect("disk");
        let bytes = fs::read(&disk).expect("read");
        assert_eq!(bytes.len() as u64, 2 * ALIGN + 4 * SECTOR);
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
        assert_eq!(bytes[450], 0xee, "the protective MBR's partition type");
        assert_eq!(&bytes[512..520], b"EFI PART");
        let content = fs::read(&part).expect("read");
        let at = usize::try_from(ALIGN).expect("small");
        assert_eq!(&bytes[at..at + content.len()], &content[..]);
        let table = gpt::GptConfig::new()
            .writable(false)
            .open(&disk)
            .expect("a GPT both headers of which are valid");
        assert_eq!(*table.guid(), disk_guid);
        let partitions = table.partitions();
        assert_eq!(partitions.len(), 1);
        let esp = &partitions[&1];
        assert_eq!(esp.part_type_guid, partition_types::EFI);
        assert_eq!(esp.part_guid, part_guid);
        assert_eq!(esp.first_lba, ALIGN / SECTOR);
        assert_eq!(esp.last_lba, ALIGN / SECTOR + 3);
        assert_eq!(esp.name, "ESP");
        let again = dir.path().join("again.img");
        gpt_disk(&part, "ESP", disk_guid, part_guid, &again).expect("disk");
        assert_eq!(fs::read(&again).expect("read"), bytes, "reproducible");
    }

    #[test]
    fn the_mbr_disk_has_the_boot_code_and_one_active_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let part = partition(dir.path());
        let disk = dir.path().join("disk.img");
        let code = vec![0x90u8; 440];
        mbr_disk(&part, FatType::Fat16, &code, *b"KILN", &disk).expect("disk");
        let bytes = fs::read(&disk).expect("read");
        assert_eq!(bytes.len() as u64, ALIGN + 4 * SECTOR);
        assert_eq!(&bytes[..440], &code[..]);
        assert_eq!(&bytes[440..444], b"KILN");
        let entry = &bytes[446..462];
        assert_eq!(entry[0], 0x80, "active");
        assert_eq!(entry[4], 0x0e, "FAT16 by LBA");
        assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(entry[12..16].try_into().unwrap()), 4);
        assert!(bytes[462..510].iter().all(|&b| b == 0), "one partition");
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
        let short = mbr_disk(&part, FatType::Fat16, &code[..100], *b"KILN", &disk);
        assert!(short.expect_err("short").to_string().contains("440"));
    }
}
