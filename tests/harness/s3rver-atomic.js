'use strict';
// s3rver-atomic.js — s3rver (tests/harness/s3/node_modules), with PutObject made atomic
// as it is in S3: s3rver writes a body straight into the object's file, so a client
// killed in the middle of a PUT (015_receive_crash.pl kills the receiver at random)
// left a truncated object under the key, which S3 never does. Here the object is
// written under a temporary key outside any prefix pgark lists and renamed into place
// once whole; an aborted PUT leaves nothing. Arguments: those of bin/s3rver.js.
const path = require('path');
const crypto = require('crypto');
const base = path.join(__dirname, 's3', 'node_modules');
const fs = require(path.join(base, 'fs-extra'));
const FilesystemStore = require(path.join(base, 's3rver', 'lib', 'stores', 'filesystem'));

const putObject = FilesystemStore.prototype.putObject;
const RESOURCES = ['object.md5', 'metadata.json', 'object']; // the object last
FilesystemStore.prototype.putObject = async function (object) {
  const tmpKey = '.pgark-tmp/' + crypto.randomBytes(8).toString('hex');
  const tmp = Object.assign(Object.create(Object.getPrototypeOf(object)), object, { key: tmpKey });
  const paths = r => [this.getResourcePath(object.bucket, tmpKey, r),
                      this.getResourcePath(object.bucket, object.key, r)];
  try {
    const result = await putObject.call(this, tmp);
    await fs.mkdirp(path.dirname(paths('object')[1]));
    for (const r of RESOURCES) {
      const [from, to] = paths(r);
      if (await fs.pathExists(from)) await fs.rename(from, to);
    }
    return result;
  } catch (e) {
    for (const r of RESOURCES) await fs.remove(paths(r)[0]).catch(() => {});
    throw e;
  }
};

process.argv.splice(1, 1, path.join(base, 's3rver', 'bin', 's3rver.js'));
require(path.join(base, 's3rver', 'bin', 's3rver.js'));
