//! Instance configuration, as LinuxKit's metadata package gives it: the providers a machine may
//! get its configuration from (a cidata disk or CD, a cloud's metadata server at its
//! link-local address, a file) are asked in LinuxKit's order; the first that answers has its
//! hostname, ssh keys and user data written under /run/config, a JSON document of user data
//! unfolded into directories and files there, and the hostname set. One line says which
//! provider answered, or that none did; either way the boot goes on.
//! Runs in: pkg/metadata's onboot container (root, /run, /dev and /sys bound in, all block
//! devices allowed, the host's network and UTS namespaces).

pub mod cdrom;
pub mod config;
pub mod http;
pub mod providers;
pub mod userdata;
