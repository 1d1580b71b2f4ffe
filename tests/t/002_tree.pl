# The tree itself: every #include points down the layers of CONVENTIONS.md
# (tests/harness/layers.pl says which), and each exported function prefix and each
# struct tag has one owner (tests/harness/names.pl), and the C sources are as
# `make format` (clang-format, .clang-format) leaves them; planted violations show that
# each check looks.
use strict;
use warnings;

use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $root = $ENV{PGARK_ROOT} or die "PGARK_ROOT is not set";

my $r = run_cmd([ 'perl', "$root/tests/harness/layers.pl" ]);
is($r->{stdout}, '', 'no include points up or sideways') or diag($r->{stdout});
is($r->{rc}, 0, 'layers.pl exits 0');

$r = run_cmd([ 'perl', "$root/tests/harness/names.pl" ]);
is($r->{stdout}, '', 'no function prefix nor struct tag has two owners') or diag($r->{stdout});
is($r->{rc}, 0, 'names.pl exits 0');

# The checker is not vacuous: a copy of the tree with common including repo.h fails.
my $copy = tempdir('pgark-tree-XXXXXX', TMPDIR => 1, CLEANUP => 1);
system('cp', '-R', "$root/src", "$root/include", "$root/walreceiver", $copy) == 0
  or die "cp: $?";
mkdir "$copy/tests";
mkdir "$copy/tests/harness";
system('cp', "$root/tests/harness/layers.pl", "$root/tests/harness/names.pl",
	"$copy/tests/harness/") == 0
  or die "cp: $?";
open my $fh, '>>', "$copy/src/common/units.c" or die "units.c: $!";
print $fh "#include \"pgark/repo.h\"\n";
close $fh;
$r = run_cmd([ 'perl', "$copy/tests/harness/layers.pl" ]);
is($r->{rc}, 1, 'an upward include fails the check');
like($r->{stdout}, qr{^src/common/units\.c:\d+: common includes pgark/repo\.h of repo, a higher layer$}m,
	'and is named with its file and line');

# And the names check: a repo_ function outside src/repo, a second struct pool.
open $fh, '>>', "$copy/src/common/units.c" or die "units.c: $!";
print $fh "int repo_planted(void)\n{\n    return 0;\n}\n";
close $fh;
open $fh, '>>', "$copy/src/ops/check.c" or die "check.c: $!";
print $fh "struct pool {\n    int planted;\n};\n";
close $fh;
$r = run_cmd([ 'perl', "$copy/tests/harness/names.pl" ]);
is($r->{rc}, 1, 'a prefix or a tag with two owners fails the check');
like($r->{stdout},
	qr{^src/common/units\.c:\d+: functions repo_\* are exported by several folders: common \(src/common/units\.c:\d+\), repo \(src/repo/\w+\.c:\d+\)$}m,
	'the prefix is named with both folders');
like($r->{stdout},
	qr{^src/common/pool\.c:\d+: struct pool is defined more than once: src/common/pool\.c:\d+, src/ops/check\.c:\d+$}m,
	'the tag is named with both places');

# The format check: the tree as it is, then a copy with one line spoiled.
$r = run_cmd([ 'make', '-s', '-C', $root, 'format-check' ]);
is($r->{rc}, 0, 'the C sources are formatted as make format leaves them')
  or diag($r->{stderr});
system('cp', "$root/Makefile", "$root/.clang-format", $copy) == 0 or die "cp: $?";
mkdir "$copy/$_" for qw(tests/unit tests/tools tests/fuzz);
open $fh, '>>', "$copy/src/common/units.c" or die "units.c: $!";
print $fh "static int   planted_spacing(void) { return 0; }\n";
close $fh;
$r = run_cmd([ 'make', '-s', '-C', $copy, 'format-check' ]);
isnt($r->{rc}, 0, 'a badly formatted line fails the format check');
like($r->{stderr}, qr{src/common/units\.c:\d+:\d+: error: code should be clang-formatted},
	'and is named with its file and line');

done_testing();
