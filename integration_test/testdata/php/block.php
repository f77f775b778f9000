<?php
// A request that blocks with its session open, before sending anything,
// until the test creates release-NAME (?f=NAME). It creates entered-NAME
// first, so the test knows it is inside the backend: a backend that dies
// now has not answered yet. The wait is bounded as in hang.php.
require __DIR__ . '/lib.php';

session_start();
touch(sq_state_dir() . '/entered-' . sq_name('f'));
$release = sq_state_dir() . '/release-' . sq_name('f');
for ($deadline = time() + 120; !file_exists($release); usleep(10 * 1000)) {
    if (time() > $deadline) {
        exit("gave up waiting\n");
    }
}
echo "released\n";
