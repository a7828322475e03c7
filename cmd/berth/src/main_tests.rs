//! Parsing tests of the command line (`Cli`).
use clap::CommandFactory;

use super::*;

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).map(|c| c.command)
}

#[test]
fn the_cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn flags_after_the_image_belong_to_the_command() {
    let Ok(Command::Run(run)) = parse(&[
        "run",
        "-d",
        "--rm",
        "-e",
        "A=1",
        "-p",
        "8080:80",
        "--net",
        "host",
        "busybox",
        "sh",
        "-c",
        "echo -n hi",
        "-d",
    ]) else {
        panic!("run did not parse");
    };
    assert!(run.detach && run.rm && run.net == "host");
    assert_eq!(run.ports, ["8080:80"]);
    assert_eq!(run.container.image(), "busybox");
    assert_eq!(run.container.command(), ["sh", "-c", "echo -n hi", "-d"]);
    let Ok(Command::Create(create)) = parse(&[
        "create", "--pod", "p1", "-v", "/a:/b:ro", "-m", "16m", "--cpus", "0.5", "-u", "1000",
        "-t", "-i", "-w", "/w", "--label", "k=v", "--name", "web", "img", "--help",
    ]) else {
        panic!("create did not parse");
    };
    assert_eq!(create.pod.as_deref(), Some("p1"));
    assert_eq!(create.container.memory, Some(16 << 20));
    assert_eq!(create.container.command(), ["--help"]);
    let Ok(Command::Run(run)) = parse(&["run", "busybox", "-H", "x"]) else {
        panic!("run did not parse");
    };
    assert_eq!(run.container.command(), ["-H", "x"]);
    assert!(parse(&["run", "-d"]).is_err(), "no image");
    let Ok(Command::Exec(exec)) = parse(&["exec", "c1", "ls", "-l"]) else {
        panic!("exec did not parse");
    };
    assert_eq!(exec.container_and_command, ["c1", "ls", "-l"]);
    assert!(parse(&["exec", "c1"]).is_err(), "no command");
    let Ok(Command::Exec(exec)) = parse(&["exec", "-it", "c1", "sh", "-i"]) else {
        panic!("exec -it did not parse");
    };
    assert!(exec.interactive && exec.tty);
    assert_eq!(exec.container_and_command, ["c1", "sh", "-i"]);
    let Ok(Command::Attach(attach)) = parse(&["attach", "--no-stdin", "c1"]) else {
        panic!("attach did not parse");
    };
    assert!(attach.no_stdin && attach.container == "c1");
    let Ok(Command::PortForward(pf)) = parse(&["port-forward", "web", "8080", ":80"]) else {
        panic!("port-forward did not parse");
    };
    assert_eq!(pf.pod, "web");
    assert_eq!(
        pf.ports,
        [
            portforward::PortSpec {
                local: 8080,
                remote: 8080
            },
            portforward::PortSpec {
                local: 0,
                remote: 80
            }
        ]
    );
    assert!(parse(&["port-forward", "web"]).is_err(), "no port");
    assert!(parse(&["port-forward", "web", "80:x"]).is_err());
}

#[test]
fn bad_values_are_refused_by_the_parser() {
    assert!(parse(&["run", "--memory", "16x", "busybox"]).is_err());
    assert!(parse(&["run", "--cpus", "0", "busybox"]).is_err());
    assert!(parse(&["run", "-v", "/a", "busybox"]).is_err());
    assert!(parse(&["run", "--net", "none", "busybox"]).is_err());
    assert!(parse(&["ps", "--state", "sleeping"]).is_err());
    assert!(parse(&["logs", "--tail", "x", "c"]).is_err());
    assert!(parse(&["stop"]).is_err());
    let Ok(Command::Stop(stop)) = parse(&["stop", "-t", "3", "a", "b"]) else {
        panic!("stop did not parse");
    };
    assert_eq!((stop.time, stop.ids.len()), (3, 2));
    let Ok(Command::Stop(stop)) = parse(&["stop", "a"]) else {
        panic!("stop did not parse");
    };
    assert_eq!(stop.time, 10);
}
