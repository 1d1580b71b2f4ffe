# Shell completion and the man page (issue 21 item 6): both are made from `pgark help`'s
# own text. The bash script completes commands, each command's options, the values an
# option's usage names, and cluster names from the configuration the command line names;
# the zsh script parses; pgark.1 renders with `man -l` without a warning and holds every
# command's usage and help; `make install` puts it in DESTDIR/PREFIX/share/man/man1.
use strict;
use warnings;

use File::Basename qw(dirname);
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $config = write_config(<<"EOF2", "$tmp/pgark.yaml");
repos:
  r: {type: posix, path: $tmp/repo}
clusters:
  alpha: {conninfo: "host=/nonexistent", repos: [r]}
  beta: {conninfo: "host=/nonexistent", repos: [r]}
  gamma: {conninfo: "host=/nonexistent", repos: [r]}
EOF2

my $r = run_pgark([ 'completion', 'bash' ]);
is($r->{rc}, 0, 'pgark completion bash');
my $bash = write_file("$tmp/pgark.bash", $r->{stdout});
my $bindir = dirname(pgark_bin());

# What the bash function offers for the words of a command line (the last is the one
# being completed).
sub complete
{
	my @words = @_;
	my $q = join(' ', map { "'$_'" } @words);
	my $script = "source '$bash'; COMP_WORDS=($q); COMP_CWORD=" . $#words
	  . '; COMPREPLY=(); _pgark; printf "%s\n" "${COMPREPLY[@]}"';
	my $res = run_cmd([ 'bash', '-c', $script ], env => { PATH => "$bindir:$ENV{PATH}" });
	return join(' ', sort grep { $_ ne '' } split /\n/, $res->{stdout});
}
is(complete('pgark', 'ba'), 'backup', 'a command');
is(complete('pgark', 're'), 'receive report restore', 'the commands a prefix names');
is(complete('pgark', '--log-level', 'd'), 'debug detail', 'a global option\'s values');
is(complete('pgark', 'backup', '--ch'), '--checkpoint', 'a command\'s option');
is(complete('pgark', 'backup', '--checkpoint', ''), 'fast spread', 'the values its usage names');
is(complete('pgark', 'restore', '--target-a'), '--target-action', 'restore\'s options');
is(complete('pgark', 'completion', ''), 'bash zsh', 'completion\'s shells');
is(complete('pgark', '--config', $config, '--cluster', ''), 'alpha beta gamma',
	'cluster names from the configuration --config names');
is(complete('pgark', '--config', $config, '--cluster', 'g'), 'gamma', '... by prefix');
is(complete('pgark', '--config', $config, '--cluster', 'alpha', 'ver'), 'verify version',
	'the command after the global options');
is(complete('pgark', '--cluster', ''), '', 'no configuration: no cluster names, no noise');

$r = run_pgark([ 'completion', 'zsh' ]);
is($r->{rc}, 0, 'pgark completion zsh');
like($r->{stdout}, qr/^#compdef pgark$/m, '... a zsh completion function');
SKIP:
{
	skip 'zsh is not installed', 1 unless -x '/usr/bin/zsh' || -x '/bin/zsh';
	my $zsh = write_file("$tmp/_pgark", $r->{stdout});
	my $z = run_cmd([ 'zsh', '-n', $zsh ]);
	is($z->{rc}, 0, 'zsh parses it') or diag($z->{stderr});
}
$r = run_pgark([ 'completion', 'fish' ]);
is($r->{rc}, 2, 'another shell: exit 2');
like($r->{stderr}, qr/no completion for shell "fish" \(expected bash or zsh\)/, '... saying which exist');

# The man page: what `pgark help` says, rendered.
my $man = PgarkTest::build_dir() . '/pgark.1';
ok(-f $man, 'make built pgark.1');
$r = run_cmd([ 'man', '--warnings', '-l', $man ], env => { MANPAGER => 'cat', MANWIDTH => 100 });
is($r->{rc}, 0, 'man -l renders it');
is($r->{stderr}, '', '... without a warning');
my $text = $r->{stdout} =~ s/.\x08//gr;    # no overstrike
for my $cmd (qw(receive backup restore wal-fetch wal-push info verify expire check drill report completion))
{
	my $help = run_pgark([ 'help', $cmd ])->{stdout};
	my ($usage) = $help =~ /^usage: (pgark \S+)/;
	like($text, qr/^\s+\Q$usage\E/m, "the man page has the usage of $cmd");
}

like($text, qr/Runs\s+pgark\s+restore\s+from\s+one\s+repository/, '... and the help text of each (drill\'s)');
like($text, qr/--config FILE\s+configuration file/, '... and the global options');

$r = run_cmd([ 'make', '--no-print-directory', '-C', $root, 'BUILD=' . PgarkTest::build_dir(), 'install',
	"DESTDIR=$tmp/dest", 'PREFIX=/usr' ]);
is($r->{rc}, 0, 'make install') or diag($r->{stderr});
is(slurp_file("$tmp/dest/usr/share/man/man1/pgark.1"), slurp_file($man),
	'the man page in DESTDIR/usr/share/man/man1');
done_testing();
