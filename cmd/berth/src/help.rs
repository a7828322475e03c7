//! What `berth COMMAND --help` shows beyond the flags (an example for every verb), shell
//! completion scripts and man pages, all made from the one clap definition.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

/// One or more example lines per verb, shown under "Examples:" in its --help and man page.
const EXAMPLES: &[(&str, &str)] = &[
    ("version", "berth version"),
    ("info", "berth info | jq .conditions"),
    (
        "pull",
        "berth pull busybox\n  berth pull --creds user:pw registry.example.com/app:1.2",
    ),
    (
        "images",
        "berth images --digests\n  berth images -o json\n  berth images --format '{{.ID}} {{json .RepoTags}}'",
    ),
    (
        "rmi",
        "berth rmi busybox registry.example.com/app:1.2\n  berth rmi --prune",
    ),
    (
        "inspect",
        "berth inspect web\n  berth inspect busybox --format '{{.ID}}'\n  berth inspect 4f2a -o yaml",
    ),
    ("imagefs", "berth imagefs"),
    (
        "runp",
        "berth runp web -n default -p 8080:80 --label app=web",
    ),
    (
        "pods",
        "berth pods --namespace default --state ready\n  berth pods -o yaml\n  berth pods --format '{{.ID}} {{.Namespace}}/{{.Name}}'",
    ),
    ("stopp", "berth stopp 4f2a"),
    (
        "rmp",
        "berth rmp 4f2a\n  berth rmp --force $(berth pods -q)\n  berth rmp --all",
    ),
    (
        "inspectp",
        "berth inspectp 4f2a\n  berth inspectp 4f2a --format '{{.status.metadata.namespace}}'",
    ),
    (
        "create",
        "berth create --pod 4f2a --name web -e A=1 -v /srv:/data:ro busybox sleep 60",
    ),
    (
        "run",
        "berth run --rm busybox echo hi\n  berth run -d --name web -p 8080:80 -m 64m --cpus 0.5 httpd",
    ),
    ("start", "berth start web\n  berth start -a job"),
    ("stop", "berth stop -t 5 web"),
    ("rm", "berth rm web\n  berth rm -f web\n  berth rm --all"),
    (
        "ps",
        "berth ps -a --namespace kube-system --name '^etcd'\n  berth ps -o json | jq -r '.containers[].id'\n  berth ps --format '{{.ID}}\\t{{.Name}}\\t{{.State}}'",
    ),
    (
        "logs",
        "berth logs -f --tail 10 web\n  berth logs --since 10m --stream stderr -t web\n  berth logs -p --limit-bytes 4096 web",
    ),
    (
        "inspectc",
        "berth inspectc web\n  berth inspectc web --format '{{.status.state}}'",
    ),
    ("update", "berth update --memory 128m --cpus 1 web"),
    (
        "exec",
        "berth exec web cat /etc/hostname\n  berth exec -it web sh",
    ),
    ("attach", "berth attach web"),
    ("port-forward", "berth port-forward web 8080:80"),
    ("stats", "berth stats -w web"),
    (
        "completion",
        "berth completion bash > /etc/bash_completion.d/berth\n  berth completion zsh > \"${fpath[1]}/_berth\"\n  berth completion fish > ~/.config/fish/completions/berth.fish",
    ),
    (
        "events",
        "berth events --filter namespace=default --filter type=stopped\n  berth events -o json | jq -r .containerName",
    ),
    (
        "statsp",
        "berth statsp\n  berth statsp -w web\n  berth statsp -o json | jq '.pods[].processCount'",
    ),
    ("metricsp", "berth metricsp\n  berth metricsp web -o yaml"),
    (
        "system",
        "berth system df\n  berth system df -o json\n  berth system prune -f\n  berth system prune -a",
    ),
    (
        "play",
        "berth play app.yaml\n  berth play -d app.yaml\n  kubectl get pod web -o yaml | berth play -d -p web -\n  berth play --logs -f app.yaml\n  berth play --down app.yaml",
    ),
    (
        "commit",
        "berth commit -a 'Jane <jane@example.com>' -m 'add config' web myapp:1\n  berth commit --pause web",
    ),
    (
        "save",
        "berth save busybox myapp:1 -o images.tar\n  berth save busybox | ssh node2 berth load",
    ),
    (
        "load",
        "berth load -i images.tar\n  skopeo copy docker://busybox docker-archive:/dev/stdout | berth load",
    ),
    ("kill", "berth kill web\n  berth kill -s USR1 web"),
    ("wait", "berth wait web worker"),
    ("top", "berth top web\n  berth top web -o json"),
    (
        "cp",
        "berth cp web:/etc/nginx/nginx.conf .\n  berth cp ./site/. web:/usr/share/nginx/html\n  berth cp web:/var/log - | tar -t",
    ),
    (
        "volume",
        "berth volume create --label app=web data\n  berth volume ls -o json\n  berth run --rm -v data:/data busybox ls /data\n  berth volume rm data\n  berth volume prune -f",
    ),
    (
        "login",
        "berth login -u alice registry.example.com\n  echo \"$TOKEN\" | berth login -u alice --password-stdin ghcr.io",
    ),
    ("logout", "berth logout registry.example.com"),
    ("man", "berth man /usr/local/share/man/man1"),
];

/// The full command: the derived one with the examples added.
pub fn command() -> clap::Command {
    let mut cmd = crate::Cli::command();
    for (name, example) in EXAMPLES {
        cmd = cmd.mut_subcommand(name, |sub| {
            sub.after_help(format!("Examples:\n  {example}"))
        });
    }
    cmd
}

/// `berth completion SHELL`: the completion script on stdout.
pub fn completion(shell: clap_complete::Shell) {
    let mut cmd = command();
    clap_complete::generate(shell, &mut cmd, "berth", &mut std::io::stdout());
}

/// `berth man DIR`: berth.1 and a berth-VERB.1 per verb in DIR; returns the files written.
pub fn man(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = command();
    let mut written = Vec::new();
    let mut write = |name: String, page: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write("berth".to_string(), cmd.clone())?;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        // The page's title is "berth-VERB", as git and podman name theirs.
        let name = format!("berth-{}", sub.get_name());
        write(
            name.clone(),
            sub.clone().name(name).version(env!("CARGO_PKG_VERSION")),
        )?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_has_an_example_and_every_argument_help() {
        let mut cmd = command();
        cmd.build();
        let mut missing = Vec::new();
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("berth "),
                "{} has no example",
                sub.get_name()
            );
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{} {id}", sub.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
        for (name, _) in EXAMPLES {
            assert!(cmd.find_subcommand(name).is_some(), "no verb {name}");
        }
    }

    #[test]
    fn completions_and_man_pages_are_generated() {
        let mut cmd = command();
        let mut bash = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "berth", &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        assert!(
            bash.contains("complete") && bash.contains("inspectp"),
            "{bash}"
        );
        let dir = std::env::temp_dir().join(format!("berth-man-{}", std::process::id()));
        let pages = man(&dir).unwrap();
        assert!(pages.len() > 20);
        let ps = std::fs::read_to_string(dir.join("berth-ps.1")).unwrap();
        assert!(
            ps.contains("berth\\-ps") && ps.contains("namespace"),
            "{ps}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
