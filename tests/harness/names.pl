#!/usr/bin/env perl
# names.pl — one name, one owner: checks the C sources of src/, walreceiver/ and
# include/pgark/ for the two naming rules of CONVENTIONS.md that a reader relies on
# when finding where something lives.
#
#   1. An exported function's prefix (its name up to the first "_") belongs to one
#      folder: repo_* is src/repo's, cli_* is src/cli's, and no other folder defines a
#      function that starts the same way. The one exception is cmd_*, the entry point
#      of each command, one per command folder, which src/main.c dispatches to.
#   2. A struct or enum tag names one type in the whole program: no two files define
#      it (C allows two file-local "struct pool"s; a reader and a debugger do not).
#
# "Exported" is a function defined at the start of a line without "static"; the
# dynamic-loading shims' definitions under the library's own names (ZSTD_*, EVP_*,
# PQ*, curl_*) count like any other and stay in their one folder (pgark/dl.h).
#
# Prints each violation as "FILE:LINE: ..." and exits 1 when there is one. Run from
# anywhere: `make names`, and tests/t/002_tree.pl in `make check`.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Find;
use File::Spec;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
chdir $root or die "names: cannot enter $root: $!\n";

# Prefixes several folders may export, and why.
my %shared = (cmd => 'each command\'s entry point, dispatched by src/main.c');

sub folder_of
{
	my ($path) = @_;
	return 'walreceiver' if $path =~ m{^walreceiver/};
	return 'main' if $path eq 'src/main.c';
	return $1 if $path =~ m{^src/([^/]+)/};
	return 'include' if $path =~ m{^include/};
	return undef;
}

my @files;
find(
	{
		wanted => sub { push @files, $File::Find::name if /\.[ch]$/ && -f $_ },
		no_chdir => 1
	},
	grep { -d } qw(src walreceiver include));
@files = sort @files;

my (%prefix, %tag, @problems);
for my $file (@files)
{
	my $folder = folder_of($file);
	open my $fh, '<', $file or die "names: cannot read $file: $!\n";
	while (my $line = <$fh>)
	{
		if ($line =~ /^(?:typedef\s+)?(struct|enum)\s+([A-Za-z_]\w*)\s*\{/)
		{
			push @{ $tag{"$1 $2"} }, "$file:$.";
			next;
		}
		next unless $file =~ /\.c$/;
		next if $line =~ /^(?:static|typedef|extern|return|struct\s+\w+\s*\{)\b/;
		# a definition or prototype at the start of a line: TYPE [*]name(
		next unless $line =~ /^[A-Za-z_][\w\s\*]*?[\s\*]([A-Za-z_]\w*)\s*\(/;
		my $name = $1;
		my $p = $name =~ /^([^_]+)_/ ? $1 : $name;
		$prefix{$p}{$folder} //= "$file:$.";
	}
	close $fh;
}

for my $p (sort keys %prefix)
{
	my @folders = sort keys %{ $prefix{$p} };
	next if @folders < 2 || exists $shared{$p};
	my $where = join ', ', map { "$_ ($prefix{$p}{$_})" } @folders;
	push @problems, "$prefix{$p}{$folders[0]}: functions ${p}_* are exported by several folders: $where";
}
for my $t (sort keys %tag)
{
	my @at = @{ $tag{$t} };
	next if @at < 2;
	push @problems, "$at[0]: $t is defined more than once: " . join(', ', @at);
}

print "$_\n" for @problems;
exit(@problems ? 1 : 0);
