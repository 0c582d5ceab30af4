"""edgeres: one resolution-switchable CNN (RS-Net) from training to a measured edge deployment.

Every CLI command is a call into a stage module that Python users can make too:
``edgeres.train``, ``edgeres.importer``, ``edgeres.export``, ``edgeres.build``, ``edgeres.bench``,
``edgeres.report``, ``edgeres.evaluate``. Stages that need torch import it lazily, so the device side
(build, bench, report) works on an install without torch.
"""
__version__ = "0.1.0"
