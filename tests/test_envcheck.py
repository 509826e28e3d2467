"""The cv2 package check behind the README's opencv-python/mmaction2 note."""
import cv2

from motionclr.envcheck import cv2_distributions, opencv_advice


def test_installed_cv2_packages_are_found():
    dists = cv2_distributions()
    assert dists and all(v.startswith(cv2.__version__.split(".")[0]) for v in dists.values())
    assert opencv_advice({"opencv-contrib-python-headless": "4.10.0"}) is None


def test_clashes_name_what_to_remove_and_what_to_keep():
    both = opencv_advice({"opencv-python": "4.9.0", "opencv-contrib-python-headless": "4.10.0"})
    assert "opencv-contrib-python-headless 4.10.0, opencv-python 4.9.0" in both
    assert both.endswith("pip uninstall -y opencv-python && pip install --force-reinstall "
                         "--no-deps opencv-contrib-python-headless")
    plain = opencv_advice({"opencv-python": "4.9.0"})
    assert "pip uninstall -y opencv-python" in plain
