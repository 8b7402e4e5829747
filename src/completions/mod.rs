//! `corral completions bash|zsh|fish`: a completion script for `corral`
//! and `corralctl`, made from the tables the parsers use (the supervisor's
//! and `check`'s options, `CTL_COMMANDS` with each subcommand's options,
//! the s6 commands), so that an option added to a parser is completed.
//!
//! Each script is one shell function, written out here once per shell,
//! that walks the words before the cursor through "contexts" (`corral`,
//! `check`, `ctl`, `ctl-stop`, ..., `cmd` for the main COMMAND), and one
//! table of contexts, generated: each with its options (`--name=K` when it
//! takes a value of kind K) and the kind of its operands.
//!
//! Kinds: `d` directories, `f` files, `t` text|json, `l` log levels, `v`
//! any value; operands also `m` (a mode or the main COMMAND), `x` (a
//! program, then its arguments), `c` (a ctl subcommand), `n` (service
//! names, asked of the running corral: `ctl status`'s first column), `s` (a
//! signal, then service names), `w` (a shell).
//!
//! The man page, `docs/corral.1`, is made from the same tables and help
//! texts by `manpage.rs`, in a test only.
//!
//! What it must never do: evaluate what the running corral answers (service
//! names are matched as plain words, never given to `compgen -W` or `eval`).

use std::ffi::OsString;
use std::fmt::Write;

use nix::sys::signal::Signal;

use crate::args::{Opt, Stop};
use crate::cli::{CHECK_OPTS, CTL_COMMANDS, FORMATS, LOG_LEVELS, SUPERVISOR_OPTS};
use crate::s6::COMMANDS;

#[cfg(test)]
mod manpage;

/// The shells, as `corral completions` names them.
pub const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

/// The modes given as corral's first argument, besides the s6 commands.
pub const MODES: [&str; 4] = ["check", "ctl", "s6-links", "completions"];

/// `corral completions SHELL` (`args` after `completions`).
pub fn main(args: &[OsString]) -> u8 {
    match script(args) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(stop) => stop.report(),
    }
}

fn script(args: &[OsString]) -> Result<String, Stop> {
    const P: &str = "corral completions";
    let words: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
    match words.as_slice() {
        ["-h" | "--help", ..] => Err(Stop::Print(format!(
            "Print a completion script for corral and corralctl.\n\nUsage: {P} bash|zsh|fish\n\n  bash: source it, or install as bash-completion/completions/corral (and corralctl)\n  zsh:  install as _corral in a directory of $fpath\n  fish: install as fish/vendor_completions.d/corral.fish\n"
        ))),
        ["bash"] => Ok(bash()),
        ["zsh"] => Ok(zsh()),
        ["fish"] => Ok(fish()),
        [] => Err(Stop::usage(P, "name a shell: bash, zsh or fish")),
        [shell] => Err(Stop::usage(
            P,
            format!("unknown shell {shell:?} (expected bash, zsh or fish)"),
        )),
        [_, extra, ..] => Err(Stop::usage(P, format!("unexpected argument {extra}"))),
    }
}

/// How a value named `name` (`DIR`, `PATH`...) is completed.
fn kind(name: &str) -> char {
    match name {
        "DIR" => 'd',
        "PATH" => 'f',
        "FORMAT" => 't',
        "LEVEL" => 'l',
        _ => 'v',
    }
}

/// A context's options, `--long=K` for one that takes a value; then
/// `-h --help` (and `-V --version` for corral itself).
fn options(table: &[Opt], extra: &str) -> String {
    let mut out = String::new();
    for opt in table {
        let value = opt.value.map(kind);
        for name in opt
            .short
            .map(|c| format!("-{c}"))
            .into_iter()
            .chain([format!("--{}", opt.long)])
        {
            out.push_str(&name);
            if let Some(k) = value {
                out.push('=');
                out.push(k);
            }
            out.push(' ');
        }
    }
    out.push_str(extra);
    out
}

/// Every context: (name, options, operands).
fn contexts() -> Vec<(String, String, char)> {
    const HELP: &str = "-h --help";
    let mut out = vec![
        (
            "corral".to_string(),
            options(SUPERVISOR_OPTS, "-h --help -V --version"),
            'm',
        ),
        ("check".into(), options(CHECK_OPTS, HELP), ' '),
        ("ctl".into(), options(&[SOCKET], HELP), 'c'),
        ("ctl-help".into(), String::new(), 'c'),
        ("s6-links".into(), format!("--force {HELP}"), 'd'),
        ("completions".into(), HELP.into(), 'w'),
        ("cmd".into(), String::new(), 'x'),
    ];
    for def in CTL_COMMANDS {
        let operands = if def.args.starts_with("SIG") {
            's'
        } else if def.args.contains("NAME") {
            'n'
        } else {
            ' '
        };
        out.push((
            format!("ctl-{}", def.name),
            options(def.opts, HELP),
            operands,
        ));
    }
    for (name, _) in COMMANDS {
        let operands = match name {
            "with-contenv" => 'x',
            "s6-svc" | "s6-svwait" | "s6-svstat" | "s6-svok" => 'd',
            "printcontenv" | "halt" => ' ',
            _ => 'f',
        };
        out.push((name.to_string(), String::new(), operands));
    }
    out
}

const SOCKET: Opt = Opt::value("socket", "PATH");

/// The words each kind offers: modes, ctl subcommands, levels, formats,
/// signals, shells; as (shell variable, words).
fn word_lists() -> Vec<(&'static str, String)> {
    let modes = MODES
        .iter()
        .copied()
        .chain(COMMANDS.iter().map(|(n, _)| *n));
    let ctl = CTL_COMMANDS.iter().map(|d| d.name).chain(["help"]);
    let signals = Signal::iterator().map(|s| s.as_str().trim_start_matches("SIG"));
    let join = |words: &mut dyn Iterator<Item = &str>| words.collect::<Vec<_>>().join(" ");
    vec![
        ("modes", join(&mut { modes })),
        ("ctlcmds", join(&mut { ctl })),
        ("levels", join(&mut LOG_LEVELS.iter().map(|(n, _)| *n))),
        ("formats", FORMATS.join(" ")),
        ("signals", join(&mut { signals })),
        ("shells", SHELLS.join(" ")),
    ]
}

/// The table, as a function `_corral_spec CTX` setting `opts` and `ops`
/// (bash and zsh share the syntax).
fn sh_spec() -> String {
    let mut out = String::from("_corral_spec() {\n    case $1 in\n");
    for (name, opts, ops) in contexts() {
        let _ = writeln!(out, "    {name}) opts='{opts}' ops='{ops}' ;;");
    }
    out.push_str("    *) opts='' ops=' ' ;;\n    esac\n}\n");
    for (var, words) in word_lists() {
        let _ = writeln!(out, "_corral_{var}='{words}'");
    }
    out
}

fn bash() -> String {
    format!(
        "# bash completion for corral and corralctl (corral completions bash)\n{}{BASH}",
        sh_spec()
    )
}

fn zsh() -> String {
    format!(
        "#compdef corral corralctl\n# zsh completion for corral and corralctl (corral completions zsh)\n{}{ZSH}",
        sh_spec()
    )
}

fn fish() -> String {
    let mut out = String::from(
        "# fish completion for corral and corralctl (corral completions fish)\nfunction __corral_spec\n    switch $argv[1]\n",
    );
    for (name, opts, ops) in contexts() {
        let _ = writeln!(
            out,
            "    case {name}\n        set -g __corral_opts {opts}\n        set -g __corral_ops '{ops}'"
        );
    }
    out.push_str("    case '*'\n        set -g __corral_opts\n        set -g __corral_ops ' '\n    end\nend\n");
    for (var, words) in word_lists() {
        let _ = writeln!(out, "set -g __corral_{var} {words}");
    }
    out.push_str(FISH);
    out
}

/// Bash: the walk, then the candidates for the word under the cursor.
const BASH: &str = r#"_corral_add() {
    local w words
    read -ra words <<<"$1"
    for w in "${words[@]}"; do
        [[ $w == "$cur"* ]] && COMPREPLY+=("$w")
    done
}
_corral_services() {
    local name line
    local -a cmd=("$prog")
    [[ $ctl == 1 ]] || cmd+=(ctl)
    [[ -n $sock ]] && cmd+=(--socket "$sock")
    while read -r name line; do
        [[ $name != NAME && $name == "$cur"* ]] && COMPREPLY+=("$name")
    done < <("${cmd[@]}" status 2>/dev/null)
}
_corral() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local prog=${COMP_WORDS[0]} ctx ctl=0 opts ops n=0 want=0 vk= vopt= sock= pre= i w o k
    COMPREPLY=()
    ctx=${prog##*/}
    [[ $ctx == corralctl ]] && ctx=ctl ctl=1
    [[ $ctx == ctl ]] || ctx=corral
    _corral_spec "$ctx"
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == = ]]; then want=1; continue; fi
        if [[ $want == 1 ]]; then
            want=0
            [[ $vopt == --socket ]] && sock=$w
            continue
        fi
        if [[ $ctx == cmd ]]; then n=$((n + 1)); continue; fi
        case $w in
        --) [[ $ctx == corral ]] && ctx=cmd && _corral_spec cmd ;;
        --socket=*) sock=${w#*=} ;;
        -*)
            for o in $opts; do
                if [[ $o == "$w="? ]]; then want=1 vk=${o#*=} vopt=$w; fi
            done ;;
        *)
            if [[ $ctx == corral ]]; then
                if [[ " $_corral_modes " == *" $w "* ]]; then ctx=$w; else ctx=cmd n=1; fi
                _corral_spec "$ctx"
            elif [[ $ctx == ctl ]]; then
                ctx=ctl-$w
                _corral_spec "$ctx"
            else
                n=$((n + 1))
            fi ;;
        esac
    done
    if [[ $cur == = && $prev == -* ]]; then
        cur=
        for o in $opts; do
            if [[ $o == "$prev="? ]]; then want=1 vk=${o#*=}; fi
        done
    fi
    if [[ $ctx != cmd && $want == 0 && $cur == --*=* ]]; then
        o=${cur%%=*} pre=${cur%%=*}= cur=${cur#*=}
        for k in $opts; do
            if [[ $k == "$o="? ]]; then want=1 vk=${k#*=}; fi
        done
    fi
    if [[ $want == 1 ]]; then
        k=$vk
    elif [[ $ctx != cmd && $cur == -* ]]; then
        for o in $opts; do
            [[ ${o%%=*} == "$cur"* ]] && COMPREPLY+=("${o%%=*}")
        done
        return 0
    else
        k=$ops
        case $ops in
        m)
            _corral_add "$_corral_modes"
            mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -c -- "$cur")
            return 0 ;;
        x)
            if [[ $n == 0 ]]; then
                mapfile -t COMPREPLY < <(compgen -c -- "$cur")
                return 0
            fi
            k=f ;;
        s)
            if [[ $n == 0 ]]; then
                _corral_add "$_corral_signals"
                return 0
            fi
            k=n ;;
        esac
    fi
    case $k in
    d) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    f) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
    t) _corral_add "$_corral_formats" ;;
    l) _corral_add "$_corral_levels" ;;
    w) _corral_add "$_corral_shells" ;;
    c) _corral_add "$_corral_ctlcmds" ;;
    n) _corral_services ;;
    esac
    [[ -n $pre ]] && COMPREPLY=("${COMPREPLY[@]/#/"$pre"}")
    return 0
}
complete -F _corral corral corralctl
"#;

/// Zsh: the same walk over `words`, candidates through compadd and _files.
const ZSH: &str = r#"_corral_services() {
    local name line
    local -a cmd names
    cmd=("$prog")
    [[ $ctl == 1 ]] || cmd+=(ctl)
    [[ -n $sock ]] && cmd+=(--socket "$sock")
    "${cmd[@]}" status 2>/dev/null | while read -r name line; do
        [[ $name != NAME ]] && names+=("$name")
    done
    compadd -Q -- "${names[@]}"
}
_corral() {
    emulate -L zsh
    local cur=${words[CURRENT]} prog=${words[1]} ctx ctl=0 opts ops n=0 want=0 vk= vopt= sock= i w o k
    local -a list
    ctx=${prog:t}
    [[ $ctx == corralctl ]] && { ctx=ctl; ctl=1 }
    [[ $ctx == ctl ]] || ctx=corral
    _corral_spec $ctx
    for ((i = 2; i < CURRENT; i++)); do
        w=${words[i]}
        if [[ $want == 1 ]]; then
            want=0
            [[ $vopt == --socket ]] && sock=$w
            continue
        fi
        if [[ $ctx == cmd ]]; then n=$((n + 1)); continue; fi
        case $w in
        (--) [[ $ctx == corral ]] && { ctx=cmd; _corral_spec cmd } ;;
        (--socket=*) sock=${w#*=} ;;
        (-*)
            for o in ${=opts}; do
                [[ $o == "$w="? ]] && { want=1; vk=${o#*=}; vopt=$w }
            done ;;
        (*)
            if [[ $ctx == corral ]]; then
                if [[ " $_corral_modes " == *" $w "* ]]; then ctx=$w; else ctx=cmd; n=1; fi
                _corral_spec $ctx
            elif [[ $ctx == ctl ]]; then
                ctx=ctl-$w
                _corral_spec $ctx
            else
                n=$((n + 1))
            fi ;;
        esac
    done
    if [[ $ctx != cmd && $want == 0 && $cur == --*=* ]]; then
        o=${cur%%=*}
        compset -P '*='
        for k in ${=opts}; do
            [[ $k == "$o="? ]] && { want=1; vk=${k#*=} }
        done
    fi
    if [[ $want == 1 ]]; then
        k=$vk
    elif [[ $ctx != cmd && $cur == -* ]]; then
        list=(${${=opts}%%=*})
        compadd -Q -- $list
        return
    else
        k=$ops
        case $k in
        (m) compadd -Q -- ${=_corral_modes}; _command_names -e; return ;;
        (x) [[ $n == 0 ]] && { _command_names -e; return }; k=f ;;
        (s) [[ $n == 0 ]] && { compadd -Q -- ${=_corral_signals}; return }; k=n ;;
        esac
    fi
    case $k in
    (d) _files -/ ;;
    (f) _files ;;
    (t) compadd -Q -- ${=_corral_formats} ;;
    (l) compadd -Q -- ${=_corral_levels} ;;
    (w) compadd -Q -- ${=_corral_shells} ;;
    (c) compadd -Q -- ${=_corral_ctlcmds} ;;
    (n) _corral_services ;;
    esac
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _corral "$@"
else
    compdef _corral corral corralctl
fi
"#;

/// Fish: one function prints the candidates for the token under the cursor.
const FISH: &str = r#"function __corral_services
    set -l cmd $argv[1]
    set -l name
    if test "$argv[2]" != 1
        set -a cmd ctl
    end
    if test -n "$argv[3]"
        set -a cmd --socket $argv[3]
    end
    command -q $cmd[1]; or return
    $cmd status 2>/dev/null | while read -l name rest
        if test "$name" != NAME
            printf '%s\n' $name
        end
    end
end
function __corral_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l prog $words[1]
    set -l ctx (basename -- $prog)
    set -l ctl 0
    set -l n 0
    set -l want 0
    set -l vk ''
    set -l vopt ''
    set -l sock ''
    set -l prefix ''
    if test "$ctx" = corralctl
        set ctx ctl
        set ctl 1
    end
    if test "$ctx" != ctl
        set ctx corral
    end
    __corral_spec $ctx
    for w in $words[2..-1]
        if test $want = 1
            set want 0
            if test "$vopt" = --socket
                set sock $w
            end
            continue
        end
        if test $ctx = cmd
            set n (math $n + 1)
            continue
        end
        switch $w
            case --
                if test $ctx = corral
                    set ctx cmd
                    __corral_spec cmd
                end
            case '--socket=*'
                set sock (string split -m1 = -- $w)[2]
            case '-*'
                for o in $__corral_opts
                    if string match -q -- "$w=?" $o
                        set want 1
                        set vk (string split -m1 = -- $o)[2]
                        set vopt $w
                    end
                end
            case '*'
                if test $ctx = corral
                    if contains -- $w $__corral_modes
                        set ctx $w
                    else
                        set ctx cmd
                        set n 1
                    end
                    __corral_spec $ctx
                else if test $ctx = ctl
                    set ctx ctl-$w
                    __corral_spec $ctx
                else
                    set n (math $n + 1)
                end
        end
    end
    set -l k
    if test $ctx != cmd -a $want = 0; and string match -q -- '--*=*' $cur
        set -l o (string split -m1 = -- $cur)
        set prefix $o[1]=
        set cur $o[2]
        for opt in $__corral_opts
            if string match -q -- "$o[1]=?" $opt
                set want 1
                set vk (string split -m1 = -- $opt)[2]
            end
        end
    end
    if test $want = 1
        set k $vk
    else if test $ctx != cmd; and string match -q -- '-*' $cur
        string replace -r -- '=.$' '' $__corral_opts
        return
    else
        set k $__corral_ops
        switch $k
            case m
                printf '%s\n' $__corral_modes
                complete -C "$cur"
                return
            case x
                if test $n = 0
                    complete -C "$cur"
                    return
                end
                set k f
            case s
                if test $n = 0
                    printf '%s\n' $__corral_signals
                    return
                end
                set k n
        end
    end
    switch $k
        case d
            __fish_complete_directories "$cur" | string replace -r '^' -- "$prefix"
        case f
            __fish_complete_path "$cur" | string replace -r '^' -- "$prefix"
        case t
            printf "$prefix%s\n" $__corral_formats
        case l
            printf "$prefix%s\n" $__corral_levels
        case w
            printf '%s\n' $__corral_shells
        case c
            printf '%s\n' $__corral_ctlcmds
        case n
            __corral_services $prog $ctl $sock
    end
end
complete -c corral -f -a '(__corral_complete)'
complete -c corralctl -f -a '(__corral_complete)'
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_of_every_table_is_in_a_context() {
        let all: String = contexts().iter().map(|(_, o, _)| o.clone() + " ").collect();
        let words: Vec<&str> = all
            .split_whitespace()
            .map(|w| w.split('=').next().unwrap())
            .collect();
        for opt in SUPERVISOR_OPTS
            .iter()
            .chain(CTL_COMMANDS.iter().flat_map(|d| d.opts))
        {
            assert!(
                words.contains(&format!("--{}", opt.long).as_str()),
                "{}",
                opt.long
            );
        }
        assert!(all.contains("--log-level=l") && all.contains("--services=d"));
    }

    #[test]
    fn unknown_shell_is_a_usage_error() {
        let err = script(&[OsString::from("tcsh")]).unwrap_err();
        assert!(matches!(err, Stop::Usage { message, .. } if message.contains("tcsh")));
        assert!(script(&[]).is_err());
    }
}
