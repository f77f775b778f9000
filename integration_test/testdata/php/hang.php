<?php
// A request that hangs with its session open until the test creates the
// file release-NAME (?f=NAME) in the state dir. The headers go out first so
// the test knows the request is inside the backend (and, with the files
// handler, holds the session's flock). The wait is bounded so a test that
// dies before releasing cannot park an FPM worker for ever.
require __DIR__ . '/lib.php';

sq_incremental();
session_start();
echo "started\n";
flush();
$release = sq_state_dir() . '/release-' . sq_name('f');
// PHP does not stat-cache missing files, so file_exists sees it appear.
for ($deadline = time() + 120; !file_exists($release); usleep(10 * 1000)) {
    if (time() > $deadline) {
        exit("gave up waiting\n"); // the status is already sent
    }
}
$_SESSION['hung'] = (int)($_SESSION['hung'] ?? 0) + 1;
echo "released\n";
