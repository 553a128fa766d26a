"""Teachers, students and complexity counting."""

from core.models.complexity import Complexity, count_macs, count_params, measure
from core.models.students import (
    STUDENTS,
    Student,
    create_student,
    list_students,
    register_student,
)
from core.models.teachers import (
    TEACHERS,
    EnsembleTeacher,
    Teacher,
    TeacherWeightsError,
    create_teacher,
    freeze,
    list_teachers,
)

__all__ = [
    "STUDENTS",
    "TEACHERS",
    "Complexity",
    "EnsembleTeacher",
    "Student",
    "Teacher",
    "TeacherWeightsError",
    "count_macs",
    "count_params",
    "create_student",
    "create_teacher",
    "freeze",
    "list_students",
    "list_teachers",
    "measure",
    "register_student",
]
