//! `kiln`: the host tool. `kiln validate FILE.yml...` checks manifests without fetching
//! anything and reports every problem with its file, line and field; `kiln build` turns them
//! into an image (a tar, or kernel+initrd), pulling registry images into the local cache;
//! `kiln pkg build` makes the images packages describe, into the local cache; `kiln cache`
//! lists and clears that cache; `kiln run` boots a built image under qemu; `kiln completions`
//! and `kiln man` write shell completions and manual pages from these command definitions.
//! Runs in: a user's shell on the build host.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use kiln::build::assemble;
use kiln::build::output::{self, Format, Output};
use kiln::images::credentials::Login;
use kiln::images::progress::mib;
use kiln::images::registry::{PullOptions, Registry};
use kiln::manifest::defaults;
use kiln::pkg::build as pkgbuild;
use kiln::pkg::debian::Debian;
use kiln::pkg::package::Package;
use kiln::run::{self, qemu};
use kiln::tree::compression::Compression;
use kiln::Input;

/// `kiln run`'s exit status when the timeout stopped the VM (as timeout(1) has it).
const TIMED_OUT: u8 = 124;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Check, build and boot LinuxKit-style image manifests",
    long_about = "Check, build and boot LinuxKit-style image manifests: `kiln validate` checks \
                  them, `kiln build` makes a bootable image, `kiln run` boots it under qemu, \
                  `kiln pkg` builds the packages they use and `kiln cache` keeps the images \
                  they pull."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests (merged in order, as a build would) without fetching anything.
    /// Exits 1 if any problem is found.
    Validate {
        /// Print the problems as a JSON list of {file, line, path, message}.
        #[arg(long)]
        json: bool,
        /// Print the merged manifest with the build's defaults filled in.
        #[arg(long)]
        print: bool,
        /// Manifest files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE.yml")]
        files: Vec<String>,
    },
    /// Build an image from manifests (merged in order). Images come from local OCI layouts
    /// and archives (`oci:`, `oci-archive:`, `docker-archive:`), packages (`@pkg:`), or
    /// registries through the local cache: an image the cache has is not fetched again.
    Build {
        /// The directory the outputs are written to.
        #[arg(short = 'o', long = "dir", default_value = ".", value_name = "DIR")]
        dir: PathBuf,
        /// The outputs' base name (default: the first manifest's name without .yml).
        #[arg(long)]
        name: Option<String>,
        /// What to write, with LinuxKit's file names: `kernel+initrd` (NAME-kernel,
        /// NAME-initrd.img, NAME-cmdline), `tar` (NAME.tar), or a disk or ISO that firmware
        /// boots: `raw-efi` (NAME-efi.img), `qcow2-efi` (NAME-efi.qcow2), `raw-bios`
        /// (NAME-bios.img), `iso-efi` (NAME-efi.iso; `iso-efi-initrd` writes
        /// NAME-efi-initrd.iso), `iso-bios` (NAME.iso). Several: repeat, or separate with
        /// commas.
        #[arg(short, long, default_value = "kernel+initrd", value_parser = Format::parse,
              value_delimiter = ',', value_name = "FORMAT")]
        format: Vec<Format>,
        /// How the initrd is compressed: `zstd` (boots fastest for its size: BENCHMARKS.md),
        /// `gzip` (as LinuxKit's), `lz4` or `none`.
        #[arg(long, default_value = "zstd", value_parser = Compression::parse)]
        compression: Compression,
        /// The local image cache (default: $KILN_CACHE, else ~/.cache/kiln/images).
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// The most one image layer may unpack to (bytes, or with K, M, G or T); a larger
        /// one is refused, naming it.
        #[arg(long, default_value = "8G", value_name = "SIZE", value_parser = parse_size)]
        max_layer_size: u64,
        #[command(flatten)]
        pull: PullArgs,
        /// Manifest files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE.yml")]
        files: Vec<String>,
    },
    /// The local image cache: list, remove and prune what pulls and package builds put there.
    Cache(Cache),
    /// Boot an image `kiln build` wrote (OUT/NAME: NAME-vmlinux or NAME-kernel,
    /// NAME-initrd.img, NAME-cmdline) under qemu, the console on this terminal, on qemu's
    /// user-mode network (the guest gets 10.0.2.15 by DHCP). Exits 0 when the guest powers off,
    /// V when it writes V to the debug-exit port (0xf4), 124 at the timeout.
    Run(RunArgs),
    /// Packages: folders with a build.yml that make an image without Docker.
    #[command(subcommand)]
    Pkg(Pkg),
    /// Print a shell's completion script for kiln, e.g. `kiln completions bash >
    /// /etc/bash_completion.d/kiln`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write kiln's manual pages (kiln.1, kiln-build.1, ...) into a directory.
    Man {
        /// The directory the pages are written to (made if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `kiln run`'s options.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Memory in MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    mem: u32,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: u32,
    /// A disk, attached as a virtio block device (repeat for more): a raw image's path, or
    /// `file=PATH[,size=SIZE][,format=raw|qcow2]`, created at SIZE (`512M`, `4G`; a number is
    /// MiB) when missing.
    #[arg(long, value_name = "FILE|file=PATH,size=SIZE,format=F")]
    disk: Vec<run::disk::Disk>,
    /// User data for the image's metadata package (/run/config/userdata, and the files a
    /// JSON document of it describes), on a `cidata` volume attached as a read-only disk.
    #[arg(long, value_name = "STRING", conflicts_with = "data_file")]
    data: Option<String>,
    /// As --data, read from FILE.
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
    /// A device added to the machine, as qemu's -device takes it (`pvpanic`,
    /// `virtio-rng-device`; microvm's virtio devices end in -device); repeat for more.
    #[arg(long, value_name = "QEMU-DEVICE")]
    device: Vec<String>,
    /// The guest's network: `user` (qemu's user-mode network), `user,restrict=on` (the guest
    /// can reach nothing, published ports still work) or `none`.
    #[arg(long, default_value = "user", value_name = "MODE")]
    networking: run::network::Networking,
    /// A host port forwarded to a guest port, `[IP:]HOST:GUEST[/tcp|/udp]`; the host side
    /// listens on 127.0.0.1 unless IP is given (repeat for more).
    #[arg(long, value_name = "[IP:]HOST:GUEST[/PROTO]")]
    publish: Vec<run::network::Publish>,
    /// The NIC's MAC address (default: one derived from the image's name, stable across runs).
    #[arg(long, value_name = "MAC")]
    mac: Option<run::network::Mac>,
    /// qemu's accelerator: `auto` (KVM where /dev/kvm runs a guest at hardware speed, else
    /// TCG), `kvm` or `tcg`.
    #[arg(long, default_value = "auto")]
    accel: run::accel::Accel,
    /// Seconds until the VM is stopped (default: never).
    #[arg(long, value_name = "S")]
    timeout: Option<u64>,
    /// Which of the images `kiln build` wrote at OUT/NAME to boot: `kernel+initrd`, or a disk
    /// or ISO (`raw-efi`, `qcow2-efi`, `iso-efi`, `iso-efi-initrd` under UEFI firmware,
    /// `raw-bios`, `iso-bios` under SeaBIOS). Default: kernel+initrd if there is one, else the
    /// first of those that is there.
    #[arg(long, value_name = "FORMAT", value_parser = Format::parse)]
    format: Option<Format>,
    /// The image: the output directory and the name given to `kiln build`; a directory alone
    /// lists the images it holds.
    #[arg(value_name = "OUT/NAME")]
    image: PathBuf,
}

/// How registries are spoken to.
#[derive(Debug, clap::Args)]
struct PullArgs {
    /// Ask the registry whether each tag still names what the cache has, and pull it if not.
    #[arg(long)]
    pull: bool,
    /// A login for a registry: HOST=USER:PASSWORD (HOST as image references name it, e.g.
    /// docker.io or localhost:5000). Repeat for more. Without one, ~/.docker/config.json's
    /// login is used, else none.
    #[arg(long, value_name = "HOST=USER:PASSWORD")]
    registry_auth: Vec<Login>,
    /// A registry (HOST or HOST:PORT) that may be spoken to over plain http when it does
    /// not answer https. Registries on this machine (localhost, 127.0.0.0/8, ::1) always may.
    #[arg(long, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct Cache {
    /// The local image cache (default: $KILN_CACHE, else ~/.cache/kiln/images).
    #[arg(long, value_name = "DIR", global = true)]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// List the images in the cache: reference, digest and the size of their blobs.
    Ls {
        /// Print a JSON list of {reference, digest, size} (size in bytes).
        #[arg(long)]
        json: bool,
    },
    /// Remove images from the cache, and the blobs no other image uses.
    Rm {
        /// References as manifests write them, or as `kiln cache ls` shows them.
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove the blobs no image uses and partial downloads.
    Prune,
}

#[derive(Debug, Subcommand)]
enum Pkg {
    /// Build packages into the local cache, each tagged by what it is made from; a package
    /// already there under its tag is not built again. Prints each reference.
    Build {
        /// Build even if the cache has the package's tag.
        #[arg(long)]
        force: bool,
        /// The local image cache (default: $KILN_CACHE, else ~/.cache/kiln/images).
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Package folders (each holding a build.yml).
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<PathBuf>,
    },
    /// Print the reference `@pkg:PKG` stands for (ORG/IMAGE:TAG), without building.
    ShowTag {
        /// Package folders.
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    default_sigpipe();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { json, print, files } => validate(&files, json, print),
        Command::Build {
            dir,
            name,
            format,
            compression,
            cache,
            max_layer_size,
            pull,
            files,
        } => build(
            &files,
            &dir,
            name,
            Output {
                formats: format,
                compression,
            },
            cache,
            max_layer_size,
            pull,
        ),
        Command::Cache(command) => cache(command),
        Command::Run(args) => run(args),
        Command::Pkg(Pkg::Build {
            force,
            cache,
            packages,
        }) => pkg_build(&packages, force, cache),
        Command::Pkg(Pkg::ShowTag { packages }) => pkg_show_tag(&packages),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(&dir),
    }
}

/// A closed standard output ends kiln as it ends Unix tools (`kiln validate --json x.yml |
/// head`): by SIGPIPE, quietly, where Rust's default would report the write as an error or
/// panic. kiln writes to no pipe or socket whose reader may go away but stdout and stderr
/// (registries are spoken to over TCP, which never raises SIGPIPE), and its children get
/// the default disposition anyway.
#[allow(unsafe_code, reason = "signal(2) has no safe wrapper")]
fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: no handler function is installed (SIG_DFL), and no thread exists yet.
    if let Err(err) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("kiln: restore SIGPIPE: {err}");
    }
}

fn man(dir: &Path) -> ExitCode {
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kiln man: {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let image = &args.image;
    let name = image.display();
    let image_name = image
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let network = run::network::Network {
        networking: args.networking,
        publish: args.publish,
        mac: args
            .mac
            .unwrap_or_else(|| run::network::Mac::derived(&image_name)),
    };
    let data = match (&args.data, &args.data_file) {
        (Some(data), _) => Ok(Some(data.clone().into_bytes())),
        (None, Some(file)) => run::data::read(file).map(Some),
        (None, None) => Ok(None),
    };
    let machine = data
        .and_then(|data| qemu::Machine::built(image, args.format).map(|machine| (machine, data)));
    let machine = machine.map(|(machine, data)| {
        let (accel, why) = run::accel::choose(args.accel);
        if let Some(why) = why {
            eprintln!("kiln run: accelerator {accel}: {why}");
        }
        if let qemu::Boot::Medium { path, format } = &machine.boot {
            eprintln!(
                "kiln run: booting {} ({format}, under {})",
                path.display(),
                if format.is_efi() { "UEFI" } else { "BIOS" }
            );
        }
        qemu::Machine {
            memory_mb: args.mem,
            cpus: args.cpus,
            disks: args.disk,
            data,
            devices: args.device,
            accel: accel.to_owned(),
            network,
            timeout: args.timeout.map(Duration::from_secs),
            ..machine
        }
    });
    let outcome = machine.and_then(|machine| machine.run(&qemu::Console::Inherit));
    match outcome {
        Ok(qemu::Outcome::PoweredOff) => ExitCode::SUCCESS,
        Ok(qemu::Outcome::Reported(value)) => {
            eprintln!("kiln run: {name}: the guest reported failure {value}");
            ExitCode::from(value)
        }
        Ok(qemu::Outcome::Failed(code)) => {
            eprintln!("kiln run: {name}: {} exited with {code}", qemu::QEMU);
            ExitCode::FAILURE
        }
        Ok(qemu::Outcome::Signalled(signal)) => {
            eprintln!(
                "kiln run: {name}: {} was killed by signal {signal}",
                qemu::QEMU
            );
            ExitCode::FAILURE
        }
        Ok(qemu::Outcome::TimedOut) => {
            let timeout = args.timeout.unwrap_or_default();
            eprintln!("kiln run: {name}: still running after {timeout} s; stopped");
            ExitCode::from(TIMED_OUT)
        }
        Err(err) => {
            eprintln!("kiln run: {name}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn cache(Cache { cache, command }: Cache) -> ExitCode {
    let dir = cache.unwrap_or_else(kiln::images::cache::default_cache);
    let result = match &command {
        CacheCommand::Ls { json: true } => kiln::images::cache::list(&dir).and_then(|entries| {
            let text = serde_json::to_string_pretty(&entries)?;
            println!("{text}");
            Ok(())
        }),
        CacheCommand::Ls { json: false } => kiln::images::cache::list(&dir).map(|entries| {
            let width = entries
                .iter()
                .map(|e| e.name.len())
                .max()
                .unwrap_or(0)
                .max(9);
            println!("{:width$}  {:19}  SIZE", "REFERENCE", "DIGEST");
            for entry in entries {
                let short = entry.digest.get(..19).unwrap_or(&entry.digest);
                println!("{:width$}  {short:19}  {}", entry.name, mib(entry.size));
            }
        }),
        CacheCommand::Rm { images } => kiln::images::cache::remove(&dir, images).map(|freed| {
            eprintln!(
                "kiln cache: removed {} image{}, freed {} blobs ({})",
                images.len(),
                if images.len() == 1 { "" } else { "s" },
                freed.blobs,
                mib(freed.bytes)
            );
        }),
        CacheCommand::Prune => kiln::images::cache::prune(&dir).map(|freed| {
            eprintln!(
                "kiln cache: freed {} blobs ({})",
                freed.blobs,
                mib(freed.bytes)
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kiln cache: {}: {err:#}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn pkg_build(packages: &[PathBuf], force: bool, cache: Option<PathBuf>) -> ExitCode {
    let cache = cache.unwrap_or_else(kiln::images::cache::default_cache);
    kiln::tree::content::set_spill_dir(cache.join(kiln::oci::ingest::INGEST_DIR));
    for_each_package(packages, "build", |package, debian| {
        let built = pkgbuild::build(package, debian, &cache, force, &mut |step| {
            eprintln!("kiln pkg: {step}")
        })?;
        if !built.built {
            eprintln!("kiln pkg: {} is up to date", built.reference);
        }
        Ok(built.reference)
    })
}

fn pkg_show_tag(packages: &[PathBuf]) -> ExitCode {
    let cache = kiln::images::cache::default_cache();
    for_each_package(packages, "show-tag", |package, debian| {
        kiln::pkg::inputs::Inputs::of(package, debian, &cache)
            .map(|inputs| pkgbuild::reference(package, &inputs))
    })
}

/// Loads each package folder and prints the reference `action` gives for it; a failure is
/// reported and the next package still handled. Exits 1 if any failed.
fn for_each_package(
    packages: &[PathBuf],
    command: &str,
    mut action: impl FnMut(&Package, &Debian) -> anyhow::Result<String>,
) -> ExitCode {
    let debian = Debian {
        cache: Debian::default_cache(),
    };
    let mut failed = false;
    for dir in packages {
        let result = Package::load(dir)
            .map_err(anyhow::Error::msg)
            .and_then(|package| action(&package, &debian));
        match result {
            Ok(reference) => println!("{reference}"),
            Err(err) => {
                eprintln!("kiln pkg {command}: {}: {err:#}", dir.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn build(
    files: &[String],
    dir: &Path,
    name: Option<String>,
    output: Output,
    cache: Option<PathBuf>,
    max_layer: u64,
    pull: PullArgs,
) -> ExitCode {
    let mut inputs = Vec::new();
    for file in files {
        match read(file) {
            Ok(input) => inputs.push(input),
            Err(err) => {
                eprintln!("{file}: cannot read: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let name = name.unwrap_or_else(|| default_name(&files[0]));
    let (manifest, mut report) = kiln::load(&inputs);
    kiln::build::preflight::check(&manifest, &mut report, &output.formats);
    kiln::sort(&mut report, &inputs);
    for warning in &report.warnings {
        eprintln!("{warning}");
    }
    let mut problems: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    if let Some(problem) = output::name_problem(&name) {
        problems.push(format!("--name: {problem}"));
    }
    problems.extend(output::host_problems(&output.formats));
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        let count = problems.len();
        eprintln!(
            "kiln: {count} problem{} found; nothing was built",
            if count == 1 { "" } else { "s" }
        );
        return ExitCode::FAILURE;
    }
    let cache = cache.unwrap_or_else(kiln::images::cache::default_cache);
    kiln::tree::content::set_spill_dir(cache.join(kiln::oci::ingest::INGEST_DIR));
    let terminal = io::stderr().is_terminal();
    let mut progress = |image: &str, done: usize, total: usize| {
        if terminal {
            eprint!("\runpacking {image}: layer {done}/{total}");
            if done == total {
                eprintln!();
            }
            let _ = io::stderr().flush();
        }
    };
    let registry = Registry::new(PullOptions {
        pull: pull.pull,
        insecure: pull.insecure_registry,
        logins: pull.registry_auth,
        terminal,
    });
    let result = assemble::assemble(
        &manifest,
        &report,
        &cache,
        Some(&registry),
        max_layer,
        &mut progress,
    )
    .and_then(|assembly| {
        for kept in &assembly.modules {
            eprintln!("{kept}");
        }
        output::write(&assembly, dir, &name, &output)
    });
    match result {
        Ok(written) => {
            if terminal {
                for path in written {
                    eprintln!("wrote {}", path.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kiln build: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A size in bytes: a number, optionally followed by K, M, G or T (powers of 1024; `KiB`,
/// `MB` and the like read the same).
fn parse_size(text: &str) -> Result<u64, String> {
    let wrong = || format!("`{text}`: give bytes, or a number with K, M, G or T");
    let upper = text.trim().to_ascii_uppercase();
    let digits = upper.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = upper[digits.len()..]
        .trim_end_matches('B')
        .trim_end_matches('I');
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(wrong()),
    };
    let number: u64 = digits.trim().parse().map_err(|_| wrong())?;
    number
        .checked_mul(1 << shift)
        .filter(|&size| size > 0)
        .ok_or_else(|| format!("`{text}`: give a size above 0 and below 16 EiB"))
}

/// The first manifest's file name without `.yml`/`.yaml`; `kiln` for standard input.
fn default_name(file: &str) -> String {
    if file == "-" {
        return "kiln".into();
    }
    let base = Path::new(file)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kiln".into());
    base.strip_suffix(".yml")
        .or_else(|| base.strip_suffix(".yaml"))
        .unwrap_or(&base)
        .to_owned()
}

fn validate(files: &[String], json: bool, print: bool) -> ExitCode {
    let mut inputs = Vec::new();
    let mut unreadable = Vec::new();
    for file in files {
        match read(file) {
            Ok(input) => inputs.push(input),
            Err(err) => unreadable.push(kiln::Diagnostic {
                file: file.clone(),
                line: 0,
                path: ".".into(),
                message: format!("cannot read: {err}"),
                warning: false,
            }),
        }
    }
    let (mut manifest, report) = kiln::load(&inputs);
    let mut diagnostics = unreadable;
    diagnostics.extend(report.diagnostics);
    let problems = diagnostics.len();
    diagnostics.extend(report.warnings);
    if json {
        match serde_json::to_string_pretty(&diagnostics) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("kiln: cannot write the report: {err}"),
        }
    } else {
        for diagnostic in &diagnostics {
            eprintln!("{diagnostic}");
        }
    }
    if problems > 0 {
        if !json {
            let count = problems;
            eprintln!(
                "kiln: {count} problem{} found",
                if count == 1 { "" } else { "s" }
            );
        }
        return ExitCode::FAILURE;
    }
    if !print {
        if !json {
            for input in &inputs {
                println!("{}: valid", input.name);
            }
        }
        return ExitCode::SUCCESS;
    }
    defaults::fill(&mut manifest);
    match serde_yaml_ng::to_string(&manifest) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kiln: cannot print the manifest: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a manifest file, or standard input for `-`.
fn read(file: &str) -> io::Result<Input> {
    if file == "-" {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text)?;
        return Ok(Input {
            name: "<stdin>".into(),
            text,
        });
    }
    Ok(Input {
        name: file.to_owned(),
        text: std::fs::read_to_string(file)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_argument_says_what_it_is() {
        Cli::command().debug_assert();
        assert_eq!(clidoc::undocumented(&Cli::command()), Vec::<String>::new());
    }

    #[test]
    fn sizes_read_as_bytes_or_with_a_binary_unit() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("1 TB"), Ok(1 << 40));
        for wrong in ["", "G", "8X", "-1G", "1.5G"] {
            let err = parse_size(wrong).expect_err(wrong);
            assert!(
                err.contains("give bytes, or a number with K, M, G or T"),
                "{err}"
            );
        }
        assert!(parse_size("0").unwrap_err().contains("above 0"));
        assert!(parse_size("99999999T")
            .unwrap_err()
            .contains("below 16 EiB"));
    }
}
